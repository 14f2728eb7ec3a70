"""``policy=diffusion``: Diffusion Policy's config, defaulting to Chi et al.'s CNN-based recipe, and its checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from embodied.policies.config import PolicyConfig

# Diffusion Policy's image encoder: ResNet-18 from scratch, GroupNorm instead of BatchNorm, spatial-softmax
# keypoints projected to 64 features, random 76/84 crops in training and the centre crop at evaluation.
PAPER_ENCODER = {
    "name": "resnet18",
    "norm": "group",
    "pool": "spatial_softmax",
    "keypoints": 32,
    "pooled_dim": 64,
    "crop": 0.9,
    "random_shift": 0,
}


@dataclass
class TransformerDenoiserConfig:
    """``denoiser: transformer`` (the paper's time-series diffusion transformer; its defaults)."""

    n_layer: int = 8  # decoder layers
    n_head: int = 4  # attention heads
    n_emb: int = 256  # width
    p_drop_emb: float = 0.0  # dropout on the input embeddings
    p_drop_attn: float = 0.3  # dropout in attention (the paper's value)
    causal_attn: bool = True  # each action attends to earlier actions only


@dataclass
class DiffusionConfig(PolicyConfig):
    """Defaults: Chi et al.'s CNN-based Diffusion Policy."""

    name: str = "diffusion"
    n_obs_steps: int = 2  # the paper's: two observed steps
    horizon: int = 16  # actions denoised per call
    n_action_steps: int = 8  # executed per call (receding horizon)
    normalization: dict[str, str] = field(
        default_factory=lambda: {"proprio": "min_max", "state": "min_max", "action": "min_max"}
    )
    encoder: Any = None  # validated by the encoder's own schema; null: PAPER_ENCODER
    share_encoder: bool = False  # one encoder for all cameras instead of one each
    film_instruction: bool = False  # FiLM the camera features on the instruction (Lang4Sim2Real; policies.film)
    text_encoder: Any = None  # the sentence encoder of film_instruction (null: all-MiniLM-L6-v2, offline)
    denoiser: str = "unet"  # unet | transformer
    down_dims: list[int] = field(default_factory=lambda: [512, 1024, 2048])  # unet
    kernel_size: int = 5  # unet
    n_groups: int = 8  # unet: GroupNorm groups
    step_embed_dim: int = 128  # unet: diffusion-step embedding width
    transformer: TransformerDenoiserConfig = field(default_factory=TransformerDenoiserConfig)  # denoiser=transformer
    num_train_timesteps: int = 100  # DDPM steps of the noise schedule
    beta_schedule: str = "squaredcos_cap_v2"  # any diffusers beta_schedule
    beta_start: float = 1e-4  # linear schedules only
    beta_end: float = 2e-2  # linear schedules only
    prediction_type: str = "epsilon"  # epsilon (predict the noise) | sample (predict the clean actions)
    clip_sample: bool = True  # clip predicted clean actions to [-1, 1] at each denoising step
    inference: str = "ddim"  # ddim | ddpm
    num_inference_steps: int = 10  # ddim steps (ddpm always takes num_train_timesteps)
    mask_padding: bool = False  # leave edge-padded steps out of the loss (the paper trains on them)

    @classmethod
    def tiny(cls) -> DiffusionConfig:
        """A 16-32 U-Net, a tiny cnn encoder, 4 DDIM steps."""
        return cls(down_dims=[16, 32], step_embed_dim=16, num_inference_steps=4,
                   encoder={"name": "cnn", "channels": [8, 8], "strides": [2, 2], "dim": 16, "crop": 0.9})  # fmt: skip


def validate(config: DiffusionConfig) -> None:
    """Config errors a user can make, named before anything is built."""
    if config.horizon < config.n_action_steps:
        raise ValueError(
            f"policy.horizon ({config.horizon}) must be >= policy.n_action_steps ({config.n_action_steps}): the "
            "prediction horizon holds the executed actions"
        )
    if config.denoiser not in ("unet", "transformer"):
        raise ValueError(f"policy.denoiser must be 'unet' or 'transformer', got {config.denoiser!r}")
    if config.denoiser == "unet":
        factor = 2 ** (len(config.down_dims) - 1)
        if config.horizon % factor:
            raise ValueError(
                f"policy.horizon ({config.horizon}) must be divisible by {factor} for a U-Net with "
                f"{len(config.down_dims)} levels (down_dims {list(config.down_dims)})"
            )
    if config.prediction_type not in ("epsilon", "sample"):
        raise ValueError(f"policy.prediction_type must be 'epsilon' or 'sample', got {config.prediction_type!r}")
    if config.inference not in ("ddim", "ddpm"):
        raise ValueError(f"policy.inference must be 'ddim' or 'ddpm', got {config.inference!r}")
    if not 1 <= config.num_inference_steps <= config.num_train_timesteps:
        raise ValueError(
            f"policy.num_inference_steps must be in [1, num_train_timesteps={config.num_train_timesteps}], "
            f"got {config.num_inference_steps}"
        )
