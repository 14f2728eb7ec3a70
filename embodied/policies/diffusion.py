"""Diffusion Policy (Chi et al. 2023): actions as a denoising diffusion process conditioned on observations.

Training: a window's ``horizon`` normalised actions (min-max to [-1, 1]) get Gaussian noise at a random step of
a DDPM schedule (100 steps, ``squaredcos_cap_v2``); the denoiser predicts that noise from the noisy actions, the
step and the observation features of the last ``n_obs_steps`` steps (per-camera encoder + low-dimensional inputs,
as global conditioning); the loss is the mean squared error. Inference starts from pure noise and denoises with
DDIM in ``num_inference_steps`` steps (DDPM with all 100 when asked), then executes ``n_action_steps`` actions
from the current step on. The schedulers are diffusers'; the U-Net and transformer are in
:mod:`embodied.policies.denoisers`. Defaults are the paper's CNN-based recipe (its optimiser, EMA and encoder
defaults live in ``configs/policy/diffusion.yaml``); ``policy=diffusion_small`` is a CPU-sized preset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from embodied.features import Feature
from embodied.policies.base import PolicyConfig, masked_mean
from embodied.policies.denoisers import ConditionalUnet1D, TransformerDenoiser
from embodied.policies.observations import CameraPolicy

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

    n_layer: int = 8
    n_head: int = 4
    n_emb: int = 256
    p_drop_emb: float = 0.0
    p_drop_attn: float = 0.3
    causal_attn: bool = True


@dataclass
class DiffusionConfig(PolicyConfig):
    """Defaults: Chi et al.'s CNN-based Diffusion Policy."""

    name: str = "diffusion"
    n_obs_steps: int = 2
    horizon: int = 16
    n_action_steps: int = 8
    normalization: dict[str, str] = field(
        default_factory=lambda: {"proprio": "min_max", "state": "min_max", "action": "min_max"}
    )
    encoder: Any = None  # validated by the encoder's own schema; null: PAPER_ENCODER
    share_encoder: bool = False
    denoiser: str = "unet"  # unet | transformer
    down_dims: list[int] = field(default_factory=lambda: [512, 1024, 2048])  # unet
    kernel_size: int = 5  # unet
    n_groups: int = 8  # unet: GroupNorm groups
    step_embed_dim: int = 128  # unet: diffusion-step embedding width
    transformer: TransformerDenoiserConfig = field(default_factory=TransformerDenoiserConfig)
    num_train_timesteps: int = 100
    beta_schedule: str = "squaredcos_cap_v2"  # any diffusers beta_schedule
    beta_start: float = 1e-4  # linear schedules only
    beta_end: float = 2e-2
    prediction_type: str = "epsilon"  # epsilon (predict the noise) | sample (predict the clean actions)
    clip_sample: bool = True  # clip predicted clean actions to [-1, 1] at each denoising step
    inference: str = "ddim"  # ddim | ddpm
    num_inference_steps: int = 10  # ddim steps (ddpm always takes num_train_timesteps)
    mask_padding: bool = False  # leave edge-padded steps out of the loss (the paper trains on them)


class DiffusionPolicy(CameraPolicy):
    def __init__(
        self,
        config: DiffusionConfig,
        features: Mapping[str, Feature],
        stats: Mapping[str, Mapping],
        encoder_configs: Mapping[str, dict] | None = None,
    ):
        validate(config)
        if config.encoder is None:
            config.encoder = dict(PAPER_ENCODER)
        super().__init__(config, features, stats, encoder_configs)
        if config.denoiser == "unet":
            self.denoiser = ConditionalUnet1D(
                self.action_dim,
                self.observation_width * config.n_obs_steps,
                list(config.down_dims),
                kernel_size=config.kernel_size,
                n_groups=config.n_groups,
                step_embed_dim=config.step_embed_dim,
            )
        else:
            self.denoiser = TransformerDenoiser(
                self.action_dim,
                self.observation_width,
                config.horizon,
                config.n_obs_steps,
                **asdict(config.transformer),
            )
        self.noise_scheduler = make_scheduler(config, "ddpm")
        self.inference_scheduler = make_scheduler(config, config.inference)
        steps = config.num_inference_steps if config.inference == "ddim" else config.num_train_timesteps
        self.inference_scheduler.set_timesteps(steps)

    def condition(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The global condition: every observed step's features, flattened (B, n_obs_steps * width)."""
        return self.observation_features(obs).flatten(1)

    def compute_loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        cond = self.condition(self.prepare_obs(batch))
        actions = self.normalizer.normalize("action", batch["action"].to(self.device).float())
        noise = torch.randn_like(actions)
        steps = torch.randint(0, self.config.num_train_timesteps, (actions.shape[0],), device=actions.device)
        noisy = self.noise_scheduler.add_noise(actions, noise, steps)
        pred = self.denoiser(noisy, steps, cond)
        target = noise if self.config.prediction_type == "epsilon" else actions
        error = F.mse_loss(pred.float(), target, reduction="none")
        if self.config.mask_padding:
            loss = masked_mean(error, batch["action_is_pad"].to(self.device))
        else:
            loss = error.mean()
        return loss, {"mse": loss.item()}

    def predict_chunk(self, obs: dict[str, torch.Tensor], generator: torch.Generator | None = None) -> torch.Tensor:
        cond = self.condition(obs)
        shape = (cond.shape[0], self.config.horizon, self.action_dim)
        sample = torch.randn(shape, device=cond.device, dtype=cond.dtype, generator=generator)
        scheduler = self.inference_scheduler
        for t in scheduler.timesteps:
            steps = torch.full((shape[0],), int(t), device=cond.device, dtype=torch.long)
            out = self.denoiser(sample, steps, cond)
            sample = scheduler.step(out, t, sample, generator=generator).prev_sample
        # clip_sample keeps the DDIM/DDPM result in [-1, 1] already; the clamp makes the bound hold without it
        return sample.clamp(-1.0, 1.0)


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


def make_scheduler(config: DiffusionConfig, kind: str):
    """A diffusers DDPM (training, and ``inference: ddpm``) or DDIM scheduler for the config's noise schedule."""
    from diffusers import DDIMScheduler, DDPMScheduler

    common = dict(
        num_train_timesteps=config.num_train_timesteps,
        beta_start=config.beta_start,
        beta_end=config.beta_end,
        beta_schedule=config.beta_schedule,
        clip_sample=config.clip_sample,
        prediction_type=config.prediction_type,
    )
    try:
        if kind == "ddpm":
            return DDPMScheduler(variance_type="fixed_small", **common)
        return DDIMScheduler(set_alpha_to_one=True, steps_offset=0, **common)
    except NotImplementedError as error:  # diffusers' message for an unknown beta_schedule
        raise ValueError(f"policy.beta_schedule: {error}") from None
