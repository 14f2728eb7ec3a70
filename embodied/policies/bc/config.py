"""``policy=bc``: behaviour cloning's config (the baseline every other policy is compared with)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from embodied.configs.checks import between, non_empty, one_of
from embodied.policies.config import PolicyConfig


@dataclass
class BCConfig(PolicyConfig):
    """An encoder per camera, the normalised low-dimensional inputs, an MLP, an action chunk (ACT-style chunking)."""

    name: str = "bc"
    horizon: int = 8  # actions predicted per call
    n_action_steps: int = 8  # all of them executed: chunked control, fewer policy calls
    encoder: Any = field(default_factory=lambda: {"name": "cnn"})  # validated by the encoder's own schema
    share_encoder: bool = False  # one encoder for all cameras instead of one each
    hidden_dims: list[int] = field(default_factory=lambda: [512, 512])  # MLP widths, input to output
    dropout: float = 0.0  # after each hidden layer
    loss: str = "l1"  # l1 | mse (L1 follows ACT: robust to multi-modal demonstrations)
    # FiLM the camera features on the instruction's sentence embedding (Lang4Sim2Real; embodied.policies.film)
    film_instruction: bool = False
    text_encoder: Any = None  # the sentence encoder of film_instruction (null: all-MiniLM-L6-v2, offline)

    CHECKS: ClassVar = {
        **PolicyConfig.CHECKS, "hidden_dims": non_empty(), "dropout": between(0, 1, high_inclusive=False),
        "loss": one_of("l1", "mse"),
    }  # fmt: skip

    @classmethod
    def tiny(cls) -> BCConfig:
        """A tiny cnn encoder and one 32-wide hidden layer."""
        return cls(encoder={"name": "cnn", "channels": [8, 8], "strides": [2, 2], "dim": 16}, hidden_dims=[32])
