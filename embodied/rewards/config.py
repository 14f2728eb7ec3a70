"""What a learned visual reward is: the method, the encoder it sees through, and how episodes are matched."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from embodied.configs.checks import Rule, at_least, one_of, positive


def _registered_method(name: str) -> bool:
    from embodied.rewards.model import REWARD_METHODS

    return name in REWARD_METHODS


def _frozen_resnet18() -> dict:
    return {"name": "resnet18", "train": "frozen"}


@dataclass
class RewardConfig:
    """A visual reward model (``embodied reward align``; saved in the reward checkpoint).

    ``rapl``: an encoder + a linear head aligned to preferences, rewarding frames by optimal-transport matching to
    preferred demos (Tian et al.); ``rlhf``: the same encoder + a per-frame scalar head, Bradley-Terry on episode
    returns; ``ot``: RAPL's reward on the encoder's own features, no head and no training (the frozen baseline).
    """

    method: str = "rapl"  # rapl | rlhf | ot (embodied.rewards.model.REWARD_METHODS; plugins may add their own)
    # any registered encoder (RAPL: a frozen ResNet-18); `reward align` fills it from the encoder group (encoder=NAME,
    # policy.encoder.train=lora ...)
    encoder: dict = field(default_factory=_frozen_resnet18)
    # what of the encoder the head reads: "pooled" (one vector per frame) or "tokens" (its spatial features,
    # flattened: keeps where things are, which a globally pooled random-init CNN loses)
    features: str = "pooled"
    head_dim: int = 32  # RAPL's Linear -> 32 (rlhf: Linear -> 32 -> ReLU -> Linear -> 1)
    epsilon: float = 0.05  # Sinkhorn's entropic regularisation (cosine costs lie in [0, 2])
    sinkhorn_iterations: int = 100
    # Bradley-Terry logits are OT-cost differences divided by this (the paper: 1, with costs in [0, 2] that caps
    # P(preferred) near 0.88; 0.1 lets it approach 1)
    temperature: float = 0.1
    camera: str | None = None  # image key; null: the store's first camera
    frame_stride: int = 2  # every k-th frame of an episode is matched (and at least its last)

    CHECKS: ClassVar = {
        "method": Rule("a registered reward method: rapl, rlhf, ot, or one of your own", _registered_method),
        "features": one_of("pooled", "tokens"), "head_dim": at_least(1),
        "epsilon": positive(), "sinkhorn_iterations": at_least(1), "temperature": positive(),
        "frame_stride": at_least(1),
    }  # fmt: skip
