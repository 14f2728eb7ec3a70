"""``objective=tov_vicreg``: VICReg (Bardes et al.) between two augmented views of a frame (invariance 25,
variance 25, covariance 1, on an expander MLP) plus temporal order verification: a head tells whether three
frames of an episode are in time order or shuffled (TOV-VICReg)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from embodied.pretrain.frames import FrameSampler
from embodied.pretrain.objective import Objective, jitter, mlp


class TOVVICRegObjective(Objective):
    """VICReg between two augmented views of a frame, plus temporal order verification of frame triplets."""

    tiny_args = {"expander_dim": 32}

    def __init__(
        self,
        encoder,
        expander_dim: int = 512,
        invariance: float = 25.0,
        variance: float = 25.0,
        covariance: float = 1.0,
        tov_weight: float = 1.0,
        max_gap: int = 10,
    ):
        super().__init__(encoder)
        self.expander = mlp(encoder.pooled_dim, expander_dim, expander_dim)
        self.tov_head = nn.Sequential(
            nn.Linear(3 * encoder.pooled_dim, encoder.pooled_dim),
            nn.ReLU(inplace=True),
            nn.Linear(encoder.pooled_dim, 1),
        )
        self.weights = (invariance, variance, covariance)
        self.tov_weight = tov_weight
        self.max_gap = max_gap

    def sample(self, frames: FrameSampler, rng: np.random.Generator, batch_size: int) -> dict:
        """Frame triplets of one episode, in order or shuffled, with their labels."""
        triplets, labels = frames.triplets(rng, batch_size, self.max_gap)
        return {"triplets": torch.from_numpy(triplets), "labels": torch.from_numpy(labels)}

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """VICReg on two views of the middle frame plus the order-verification loss."""
        device = next(self.parameters()).device
        triplets, labels = batch["triplets"].to(device), batch["labels"].to(device).float()
        n = triplets.shape[0]
        middle = triplets[:, 1]
        z1 = self.expander(self.encoder(jitter(middle)).pooled)
        z2 = self.expander(self.encoder(jitter(middle)).pooled)
        inv, var, cov = vicreg_terms(z1, z2)
        features = self.encoder(triplets.flatten(0, 1)).pooled.reshape(n, -1)
        logits = self.tov_head(features).squeeze(-1)
        tov = F.binary_cross_entropy_with_logits(logits, labels)
        w_inv, w_var, w_cov = self.weights
        loss = w_inv * inv + w_var * var + w_cov * cov + self.tov_weight * tov
        accuracy = ((logits > 0).float() == labels).float().mean()
        return loss, {
            "invariance": inv.item(),
            "variance": var.item(),
            "covariance": cov.item(),
            "tov": tov.item(),
            "tov_accuracy": accuracy.item(),
        }


def vicreg_terms(z1: torch.Tensor, z2: torch.Tensor, eps: float = 1e-4) -> tuple[torch.Tensor, ...]:
    """VICReg's invariance (MSE), variance (hinge on each dimension's std, target 1) and covariance (squared
    off-diagonal covariances / dim) terms, variance and covariance averaged over both branches."""
    invariance = F.mse_loss(z1, z2)
    variance = covariance = 0.0
    n, d = z1.shape
    for z in (z1, z2):
        z = z - z.mean(0)
        std = torch.sqrt(z.var(0) + eps)
        variance = variance + F.relu(1 - std).mean() / 2
        cov = (z.T @ z) / max(n - 1, 1)
        off_diagonal = cov - torch.diag(torch.diagonal(cov))
        covariance = covariance + off_diagonal.pow(2).sum() / d / 2
    return invariance, variance, covariance
