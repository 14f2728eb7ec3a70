"""Behaviour cloning: an encoder per camera, normalised proprioception, an MLP, an action chunk (L1 or MSE).

The baseline every other policy is compared with. Each observed step's image is pooled to one vector by its
camera's encoder; the vectors of all observed steps and the low-dimensional inputs are concatenated and mapped
to ``horizon`` actions at once (action chunking, as in ACT), of which ``n_action_steps`` are executed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from embodied.encoders import make_encoder
from embodied.features import Feature
from embodied.policies.base import Policy, PolicyConfig, feature_key


@dataclass
class BCConfig(PolicyConfig):
    name: str = "bc"
    horizon: int = 8
    n_action_steps: int = 8
    encoder: Any = field(default_factory=lambda: {"name": "cnn"})  # validated by the encoder's own schema
    share_encoder: bool = False  # one encoder for all cameras instead of one each
    hidden_dims: list[int] = field(default_factory=lambda: [512, 512])
    dropout: float = 0.0
    loss: str = "l1"  # l1 | mse


class BCPolicy(Policy):
    def __init__(
        self,
        config: BCConfig,
        features: Mapping[str, Feature],
        stats: Mapping[str, Mapping],
        encoder_configs: Mapping[str, dict] | None = None,
    ):
        super().__init__(config, features, stats, encoder_configs)
        if config.loss not in ("l1", "mse"):
            raise ValueError(f"policy.loss must be 'l1' or 'mse', got {config.loss!r}")
        self.encoders = build_camera_encoders(
            self.image_keys, config.encoder, config.share_encoder, self.saved_encoder_configs
        )
        width = sum(self.camera_encoder(k).dim for k in self.image_keys)
        width += sum(int(self.features[k].shape[-1]) for k in self.lowdim_keys)
        layers: list[nn.Module] = []
        in_dim = width * config.n_obs_steps
        for hidden in config.hidden_dims:
            layers += [nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Dropout(config.dropout)]
            in_dim = hidden
        layers.append(nn.Linear(in_dim, config.horizon * self.action_dim))
        self.head = nn.Sequential(*layers)

    def camera_encoder(self, key: str):
        return self.encoders["shared" if self.config.share_encoder else camera_name(key)]

    def image_encoders(self) -> dict:
        return {key: self.camera_encoder(key) for key in self.image_keys}

    def observation_features(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(B, n_obs_steps, ...) prepared observations -> (B, n_obs_steps * width)."""
        parts = []
        for key in self.image_keys:
            if feature_key(key) in obs:  # pooled features computed once by the feature cache
                parts.append(obs[feature_key(key)])
                continue
            images = obs[key]
            batch, steps = images.shape[:2]
            pooled = self.camera_encoder(key)(images.flatten(0, 1)).pooled
            parts.append(pooled.view(batch, steps, -1))
        parts += [obs[key] for key in self.lowdim_keys]
        return torch.cat(parts, -1).flatten(1)

    def predict_chunk(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.head(self.observation_features(obs))
        return out.view(out.shape[0], self.config.horizon, self.action_dim)

    def compute_loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        pred = self.predict_chunk(self.prepare_obs(batch))
        loss = self.masked_action_loss(pred, batch, self.config.loss)
        return loss, {self.config.loss: loss.item()}


def camera_name(key: str) -> str:
    """``images/agentview`` -> ``agentview`` (module and file names cannot hold '/')."""
    return key.split("/", 1)[-1]


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
