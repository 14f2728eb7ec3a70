"""Behaviour cloning: an encoder per camera, normalised proprioception, an MLP, an action chunk (L1 or MSE).

Each observed step's image is pooled to one vector by its camera's encoder; the vectors of all observed steps and
the low-dimensional inputs are concatenated and mapped to ``horizon`` actions at once (action chunking, as in ACT),
of which ``n_action_steps`` are executed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from embodied.features import Feature
from embodied.policies.base import masked_sample_mean
from embodied.policies.bc.config import BCConfig
from embodied.policies.camera_policy import CameraPolicy


class BCPolicy(CameraPolicy):
    """Behaviour cloning (see the module docstring); built from ``(config, features, stats)``."""

    def __init__(
        self,
        config: BCConfig,
        features: Mapping[str, Feature],
        stats: Mapping[str, Mapping],
        checkpoint_dir=None,
    ):
        if config.loss not in ("l1", "mse"):
            raise ValueError(f"policy.loss must be 'l1' or 'mse', got {config.loss!r}")
        super().__init__(config, features, stats, checkpoint_dir)
        layers: list[nn.Module] = []
        in_dim = self.observation_width * config.n_obs_steps
        for hidden in config.hidden_dims:
            layers += [nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Dropout(config.dropout)]
            in_dim = hidden
        layers.append(nn.Linear(in_dim, config.horizon * self.action_dim))
        self.head = nn.Sequential(*layers)

    def predict_chunk(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Observation features of all observed steps -> (B, horizon, action_dim) normalised actions."""
        out = self.head(self.observation_features(obs).flatten(1))
        return out.view(out.shape[0], self.config.horizon, self.action_dim)

    def compute_loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """L1 (or MSE) to the normalised target chunk, padded steps past an episode's end left out."""
        pred = self.predict_chunk(self.prepare_obs(batch))
        loss = self.masked_action_loss(pred, batch, self.config.loss)
        return loss, {self.config.loss: loss.item()}

    def chunk_log_likelihood(self, batch: Mapping[str, Any], generator: torch.Generator) -> torch.Tensor:
        """The chunk's log-likelihood under the distribution the loss implies, up to scale and a constant: minus
        the mean L1 (Laplace) or squared (Gaussian) error of the prediction, padded steps left out."""
        pred = self.predict_chunk(self.prepare_obs(batch))
        target = self.normalizer.normalize("action", batch["action"].to(self.device).float())
        error = (pred - target).abs() if self.config.loss == "l1" else (pred - target).square()
        return -masked_sample_mean(error, batch["action_is_pad"].to(self.device))
