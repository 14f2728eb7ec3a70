"""``objective=time_contrastive``: InfoNCE where a frame's positive is a frame of the same episode at most
``window`` steps away and every other frame in the batch is a negative (TCN / R3M-style)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from embodied.pretrain.frames import FrameSampler
from embodied.pretrain.objective import Objective, mlp


class TimeContrastiveObjective(Objective):
    """InfoNCE between frames of the same episode at most ``window`` steps apart; the batch's others are negatives."""

    tiny_args = {"projection_dim": 16}

    def __init__(self, encoder, projection_dim: int = 128, temperature: float = 0.1, window: int = 3):
        super().__init__(encoder)
        self.projection = mlp(encoder.pooled_dim, encoder.pooled_dim, projection_dim)
        self.temperature = temperature
        self.window = window

    def sample(self, frames: FrameSampler, rng: np.random.Generator, batch_size: int) -> dict:
        """Anchor frames and positives at most ``window`` steps away in the same episode."""
        anchors, positives = frames.pairs(rng, batch_size, self.window)
        return {"anchors": torch.from_numpy(anchors), "positives": torch.from_numpy(positives)}

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """Symmetric InfoNCE over the batch."""
        device = next(self.parameters()).device
        both = torch.cat([batch["anchors"], batch["positives"]]).to(device)
        z = F.normalize(self.projection(self.encoder(both).pooled), dim=-1)
        anchors, positives = z.chunk(2)
        logits = anchors @ positives.T / self.temperature
        targets = torch.arange(len(anchors), device=device)
        loss = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
        accuracy = (logits.argmax(1) == targets).float().mean()
        return loss, {"infonce": loss.item(), "top1": accuracy.item()}
