"""Self-supervised objectives for encoders on robot data.

- ``mae``: masked autoencoding (He et al.): ViTMAE reconstructs the pixels of 75% hidden patches; the encoder
  shares its weights with ViTMAE's ``vit`` and keeps them afterwards.
- ``tov_vicreg``: VICReg (Bardes et al.) between two augmented views of a frame (invariance 25, variance 25,
  covariance 1, on an expander MLP) plus temporal order verification: a head tells whether three frames of an
  episode are in time order or shuffled (TOV-VICReg).
- ``time_contrastive``: InfoNCE where a frame's positive is a frame of the same episode at most ``window`` steps
  away and every other frame in the batch is a negative (TCN / R3M-style).

Each objective takes uint8 frames from :class:`FrameSampler` and returns (loss, metrics).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from embodied.pretrain.frames import FrameSampler


def _mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim)
    )


def jitter(images: torch.Tensor, generator: torch.Generator | None = None, strength: float = 0.2) -> torch.Tensor:
    """Random per-image brightness and contrast on uint8 frames (the second augmentation beside the encoder's
    random shift)."""
    x = images.float()
    n = x.shape[0]
    brightness = 1 + strength * (2 * torch.rand(n, 1, 1, 1, generator=generator, device=x.device) - 1)
    contrast = 1 + strength * (2 * torch.rand(n, 1, 1, 1, generator=generator, device=x.device) - 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * contrast + mean * brightness).clamp(0, 255).to(torch.uint8)


class MAEObjective(nn.Module):
    def __init__(self, encoder, mask_ratio: float = 0.75):
        super().__init__()
        from transformers import ViTMAEForPreTraining

        if encoder.config.name != "mae":
            raise ValueError(f"objective=mae trains a ViTMAE encoder (encoder=mae), got encoder={encoder.config.name}")
        self.encoder = encoder
        config = copy.deepcopy(encoder.backbone.config)
        config.mask_ratio = mask_ratio
        self.model = ViTMAEForPreTraining(config)
        self.model.vit = encoder.backbone  # shared: what MAE learns is the encoder's
        self._mask_ratio = mask_ratio

    def sample(self, frames: FrameSampler, rng: np.random.Generator, batch_size: int) -> dict:
        return {"images": torch.from_numpy(frames.frames(rng, batch_size))}

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        pixels = self.encoder.preprocess(batch["images"].to(self.device))
        config = self.encoder.backbone.config
        config.mask_ratio, saved = self._mask_ratio, config.mask_ratio
        try:
            loss = self.model(
                pixel_values=pixels, interpolate_pos_encoding=self.encoder.input_size != config.image_size
            ).loss
        finally:
            config.mask_ratio = saved  # as an encoder it sees every patch
        return loss, {"reconstruction": loss.item()}

    @property
    def device(self):
        return next(self.parameters()).device


class TOVVICRegObjective(nn.Module):
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
        super().__init__()
        self.encoder = encoder
        self.expander = _mlp(encoder.pooled_dim, expander_dim, expander_dim)
        self.tov_head = nn.Sequential(
            nn.Linear(3 * encoder.pooled_dim, encoder.pooled_dim),
            nn.ReLU(inplace=True),
            nn.Linear(encoder.pooled_dim, 1),
        )
        self.weights = (invariance, variance, covariance)
        self.tov_weight = tov_weight
        self.max_gap = max_gap

    def sample(self, frames: FrameSampler, rng: np.random.Generator, batch_size: int) -> dict:
        triplets, labels = frames.triplets(rng, batch_size, self.max_gap)
        return {"triplets": torch.from_numpy(triplets), "labels": torch.from_numpy(labels)}

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
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


class TimeContrastiveObjective(nn.Module):
    def __init__(self, encoder, projection_dim: int = 128, temperature: float = 0.1, window: int = 3):
        super().__init__()
        self.encoder = encoder
        self.projection = _mlp(encoder.pooled_dim, encoder.pooled_dim, projection_dim)
        self.temperature = temperature
        self.window = window

    def sample(self, frames: FrameSampler, rng: np.random.Generator, batch_size: int) -> dict:
        anchors, positives = frames.pairs(rng, batch_size, self.window)
        return {"anchors": torch.from_numpy(anchors), "positives": torch.from_numpy(positives)}

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        device = next(self.parameters()).device
        both = torch.cat([batch["anchors"], batch["positives"]]).to(device)
        z = F.normalize(self.projection(self.encoder(both).pooled), dim=-1)
        anchors, positives = z.chunk(2)
        logits = anchors @ positives.T / self.temperature
        targets = torch.arange(len(anchors), device=device)
        loss = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
        accuracy = (logits.argmax(1) == targets).float().mean()
        return loss, {"infonce": loss.item(), "top1": accuracy.item()}


OBJECTIVES = {"mae": MAEObjective, "tov_vicreg": TOVVICRegObjective, "time_contrastive": TimeContrastiveObjective}
