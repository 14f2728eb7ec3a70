"""``policy=openvla``: the VLA's config, what ``train: auto`` resolves to, and its checks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from embodied.policies.config import PolicyConfig
from embodied.policies.openvla.language_model import OPENVLA_PROMPT, LanguageModelConfig, check_lm_config

OPENVLA_ENCODER = {"name": "dinosiglip"}
DECODINGS = ("sequential", "parallel")
ACTION_HEADS = ("tokens", "l1")


@dataclass
class VLAConfig(PolicyConfig):
    """An OpenVLA-style VLA: vision encoder -> MLP projector -> causal LM emitting 256-bin action tokens."""

    name: str = "openvla"
    n_obs_steps: int = 1  # OpenVLA sees the current image only
    horizon: int = 1  # actions predicted per call (parallel decoding: the chunk K)
    n_action_steps: int = 1  # executed per call
    obs_keys: list[str] | None = None  # null: every camera, and proprio when use_proprio
    # actions: the action tokenizer's q01/q99 (keep identity here); proprio to [-1, 1]
    normalization: dict[str, str] = field(default_factory=lambda: {"proprio": "min_max", "action": "identity"})
    encoder: Any = None  # validated by the encoder's own schema; null: OpenVLA's dinosiglip
    share_encoder: bool = True  # one vision backbone for every camera (OpenVLA-OFT)
    projector_hidden: int | None = None  # null: 4 x the vision width (OpenVLA's fused-backbone projector)
    lm: LanguageModelConfig = field(default_factory=LanguageModelConfig)  # the causal LM and how it trains
    prompt: str = OPENVLA_PROMPT  # OpenVLA's prompt; {instruction} is replaced (lower-cased, no final period)
    decoding: str = "sequential"  # sequential | parallel
    action_head: str = "tokens"  # tokens | l1 (l1: parallel decoding only)
    head_hidden: int | None = None  # l1 head width; null: the LM's hidden size
    head_blocks: int = 2  # l1 head residual blocks
    use_proprio: bool = False  # proprio as one extra token after the image tokens (OpenVLA-OFT)
    n_bins: int = 256  # uniform bins per action dimension (OpenVLA: 256, the last 256 token ids)
    unnorm_key: str | None = None  # which dataset's statistics un-normalise actions; null: the only one
    save_lm: str = "adapters"  # lm.train=lora: adapters (base reloaded from lm.pretrained) | merged (not quantised)

    @classmethod
    def tiny(cls) -> VLAConfig:
        """A tiny cnn encoder (4x4 token grid at 32 px) and a 2-layer, 64-wide Llama."""
        return cls(
            encoder={"name": "cnn", "channels": [8, 8, 8], "strides": [2, 2, 2], "dim": 16},
            lm=LanguageModelConfig(model={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                                          "num_attention_heads": 2, "num_key_value_heads": 2}),
        )  # fmt: skip


def base_lm_reloaded(config: VLAConfig) -> bool:
    """Whether checkpoints leave the pretrained base LM's weights out, to be reloaded from ``lm.pretrained``: LoRA
    saved as adapters alone (``save_lm: adapters``), and any quantised LM (its 8/4-bit weights are bitsandbytes'
    packed format, which a model rebuilt from its config cannot take: the base is loaded and quantised again)."""
    lm = config.lm
    return bool(lm.pretrained) and ((lm.train == "lora" and config.save_lm == "adapters") or bool(lm.quantization))


def resolve_train_modes(config: VLAConfig) -> None:
    """``train: auto`` (the openvla preset's default for the LM and the vision encoder): LoRA where the part loads
    pretrained weights (OpenVLA's fine-tuning recipe: r 32, alpha 16, every linear layer), full training where it
    is built from its config with random weights (adapters on random weights learn little; nothing to preserve)."""
    if config.lm.train == "auto":
        config.lm.train = "lora" if config.lm.pretrained else "full"
    encoder = config.encoder
    if encoder.get("train") == "auto":
        halves = [encoder] + [encoder.get(h) or {} for h in ("dinov2", "siglip")]
        pretrained = any(isinstance(h, Mapping) and h.get("pretrained") for h in halves)
        encoder["train"] = "lora" if pretrained else "finetune"


def validate(config: VLAConfig) -> None:
    """Config errors a user can make, named before anything is built."""
    if config.decoding not in DECODINGS:
        raise ValueError(f"policy.decoding must be one of {DECODINGS}, got {config.decoding!r}")
    if config.action_head not in ACTION_HEADS:
        raise ValueError(f"policy.action_head must be one of {ACTION_HEADS}, got {config.action_head!r}")
    if config.action_head == "l1" and config.decoding != "parallel":
        raise ValueError("policy.action_head=l1 needs policy.decoding=parallel (the sequential decoder emits tokens)")
    if config.n_obs_steps != 1:
        raise ValueError(f"policy=openvla sees one observation (n_obs_steps=1), got {config.n_obs_steps}")
    if config.normalization.get("action", "identity") != "identity":
        raise ValueError(
            "policy=openvla normalises actions with its action tokenizer: keep policy.normalization.action=identity"
        )
    if config.save_lm not in ("adapters", "merged"):
        raise ValueError(f"policy.save_lm must be adapters or merged, got {config.save_lm!r}")
    if config.lm.quantization and config.lm.train == "lora" and config.save_lm == "merged":
        raise ValueError(
            f"policy.save_lm=merged folds the adapters into the LM's weights, which policy.lm.quantization="
            f"{config.lm.quantization} holds in bitsandbytes' format; use policy.save_lm=adapters (the checkpoint "
            "reloads the base from lm.pretrained and quantises it again)"
        )
    if config.n_bins < 2:
        raise ValueError(f"policy.n_bins must be >= 2, got {config.n_bins}")
    check_lm_config(config.lm)
