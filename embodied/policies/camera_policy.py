"""Policies that read cameras through registered encoders: one encoder per camera (or one shared), each
observed step's image pooled to one vector and concatenated with the normalised low-dimensional inputs.

Behaviour cloning and Diffusion Policy (its "observation encoder") share this; the encoders themselves come from
the encoder registry, so ``encoder=dinov2`` swaps them for every such policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from embodied.encoders import make_encoder
from embodied.features import INSTRUCTION, Feature, camera_name
from embodied.policies.base import Policy, feature_key
from embodied.policies.config import PolicyConfig


class CameraPolicy(Policy):
    """A :class:`Policy` with ``self.encoders`` built from ``config.encoder`` and ``config.share_encoder`` (the
    config must have both fields)."""

    def __init__(
        self,
        config: PolicyConfig,
        features: Mapping[str, Feature],
        stats: Mapping[str, Mapping],
        checkpoint_dir=None,
    ):
        super().__init__(config, features, stats, checkpoint_dir)
        self.encoders = build_camera_encoders(
            self.image_keys, config.encoder, config.share_encoder, self.saved_encoder_configs
        )
        self.instruction_film = None
        if getattr(config, "film_instruction", False):  # Lang4Sim2Real's FiLM on the (domain-prefixed) instruction
            from embodied.policies.film import InstructionFiLM

            if not self.image_keys:
                raise ValueError("policy.film_instruction=true conditions camera features: the policy has no camera")
            width = sum(self.camera_encoder(k).pooled_dim for k in self.image_keys)
            self.instruction_film = InstructionFiLM(width, getattr(config, "text_encoder", None))

    def camera_encoder(self, key: str):
        """The encoder that reads camera ``key`` (``images/<camera>``)."""
        return self.encoders["shared" if self.config.share_encoder else camera_name(key)]

    def image_encoders(self) -> dict:
        """{image key: its encoder}, for the feature cache."""
        return {key: self.camera_encoder(key) for key in self.image_keys}

    @property
    def observation_width(self) -> int:
        """Width of one observed step's feature vector: pooled camera features + low-dimensional inputs."""
        width = sum(self.camera_encoder(k).pooled_dim for k in self.image_keys)
        return width + sum(int(self.features[k].shape[-1]) for k in self.lowdim_keys)

    def observation_features(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Prepared observations (B, n_obs_steps, ...) -> (B, n_obs_steps, observation_width)."""
        parts = []
        for key in self.image_keys:
            if feature_key(key) in obs:  # pooled features computed once by the feature cache
                parts.append(obs[feature_key(key)])
                continue
            images = obs[key]
            batch, steps = images.shape[:2]
            pooled = self.camera_encoder(key)(images.flatten(0, 1)).pooled
            parts.append(pooled.view(batch, steps, -1))
        if self.instruction_film is not None:
            parts = [self.instruction_film(torch.cat(parts, -1), obs.get(INSTRUCTION))]
        parts += [obs[key] for key in self.lowdim_keys]
        return torch.cat(parts, -1)


def build_camera_encoders(
    image_keys: list[str], encoder_cfg: Any, shared: bool, saved: Mapping[str, dict]
) -> nn.ModuleDict:
    """One encoder per camera (or one shared), rebuilt from saved configs when restoring a checkpoint."""
    names = ["shared"] if shared and image_keys else [camera_name(k) for k in image_keys]
    encoders = nn.ModuleDict()
    for name in names:
        if name in saved:
            encoders[name] = make_encoder(saved[name]["config"], backbone_config=saved[name]["backbone"])
        else:
            encoders[name] = make_encoder(encoder_cfg)
    return encoders
