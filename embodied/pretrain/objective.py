"""The objective interface: a self-supervised loss that trains an encoder on frames of episode stores.

An objective is an ``nn.Module`` holding the encoder it trains (``self.encoder``) and whatever heads it needs; it
draws its own batches from a :class:`~embodied.pretrain.frames.FrameSampler` (single frames, pairs or triplets of
the same episode) and computes ``(loss, metrics)``, so it trains through the one
:class:`~embodied.training.trainer.Trainer` like a policy. Registered in ``OBJECTIVES`` by name (``objective=``).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import nn

from embodied.pretrain.frames import FrameSampler


class Objective(nn.Module):
    """Base class: subclasses implement :meth:`sample` and :meth:`compute_loss`.

    ``encoder_name`` and ``tiny_args`` say how the contract tests build a small instance.
    """

    encoder_name: ClassVar[str] = "vit"  # an encoder this objective trains (the contract tests use it)
    tiny_args: ClassVar[dict] = {}  # objective_args that keep it small
    tiny_batch_size: ClassVar[int] = 16  # the contract tests' batch (objectives with noisy per-batch losses need more)

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def prepare(self, frames: FrameSampler) -> None:
        """Derives what the objective needs from the data before training (the caption table of the language
        objectives); nothing here. Called on fresh and resumed runs alike, so it must be deterministic."""

    def sample(self, frames: FrameSampler, rng: np.random.Generator, batch_size: int) -> dict:
        """A batch of ``batch_size`` uint8 frames (or pairs, triplets) drawn with ``rng``."""
        raise NotImplementedError

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """(scalar loss, metrics) for a batch from :meth:`sample`."""
        raise NotImplementedError

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        return self.compute_loss(batch)

    @property
    def device(self) -> torch.device:
        """Where the objective's weights are."""
        return next(self.parameters()).device


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """Linear -> BatchNorm -> ReLU -> Linear (VICReg's expander and projection heads)."""
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
