"""Diffusion Policy (Chi et al. 2023): actions as a denoising diffusion process conditioned on observations.

Training: a window's ``horizon`` normalised actions (min-max to [-1, 1]) get Gaussian noise at a random step of
a DDPM schedule (100 steps, ``squaredcos_cap_v2``); the denoiser predicts that noise from the noisy actions, the
step and the observation features of the last ``n_obs_steps`` steps (per-camera encoder + low-dimensional inputs,
as global conditioning); the loss is the mean squared error. Inference starts from pure noise and denoises with
DDIM in ``num_inference_steps`` steps (DDPM with all 100 when asked), then executes ``n_action_steps`` actions
from the current step on. The schedulers are diffusers'; the U-Net and transformer are in
:mod:`embodied.policies.diffusion.denoisers`. Defaults are the paper's CNN-based recipe (its optimiser, EMA and encoder
defaults live in ``configs/policy/diffusion.yaml``); ``policy=diffusion_small`` is a CPU-sized preset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import torch
import torch.nn.functional as F

from embodied.features import Feature
from embodied.policies.base import masked_mean, masked_sample_mean
from embodied.policies.camera_policy import CameraPolicy
from embodied.policies.diffusion.config import PAPER_ENCODER, DiffusionConfig, validate
from embodied.policies.diffusion.denoisers import ConditionalUnet1D, TransformerDenoiser


class DiffusionPolicy(CameraPolicy):
    """Diffusion Policy (see the module docstring); built from ``(config, features, stats)``."""

    def __init__(
        self,
        config: DiffusionConfig,
        features: Mapping[str, Feature],
        stats: Mapping[str, Mapping],
        checkpoint_dir=None,
    ):
        validate(config)
        if config.encoder is None:
            config.encoder = dict(PAPER_ENCODER)
        super().__init__(config, features, stats, checkpoint_dir)
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
        """MSE between the denoiser's output and the noise (or the clean actions) at a random diffusion step."""
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

    def chunk_log_likelihood(self, batch: Mapping[str, Any], generator: torch.Generator) -> torch.Tensor:
        """Diffusion-DPO's surrogate (Wallace et al. 2023): minus the denoising error at one diffusion step and noise
        drawn from ``generator`` (the ELBO's term at that step, up to its weight), per chunk. Padded steps are left
        out; the same seed gives the same step and noise to the policy and its reference."""
        cond = self.condition(self.prepare_obs(batch))
        actions = self.normalizer.normalize("action", batch["action"].to(self.device).float())
        noise = torch.randn(actions.shape, generator=generator, device=generator.device).to(actions.device)
        steps = torch.randint(0, self.config.num_train_timesteps, (actions.shape[0],), generator=generator,
                              device=generator.device).to(actions.device)  # fmt: skip
        pred = self.denoiser(self.noise_scheduler.add_noise(actions, noise, steps), steps, cond)
        target = noise if self.config.prediction_type == "epsilon" else actions
        error = (pred.float() - target).square()
        return -masked_sample_mean(error, batch["action_is_pad"].to(self.device))

    def predict_chunk(self, obs: dict[str, torch.Tensor], generator: torch.Generator | None = None) -> torch.Tensor:
        """Denoises pure noise into (B, horizon, action_dim) normalised actions with the inference scheduler."""
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
