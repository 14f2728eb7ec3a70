"""Normalisation from dataset statistics, stored as buffers inside the policy (so saved with its weights).

Modes: ``mean_std`` (zero mean, unit variance), ``min_max`` (to [-1, 1], as Diffusion Policy needs for actions),
``identity``. Near-constant dimensions (std or half-range below 1e-4) are only centred, never blown up.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

MODES = ("mean_std", "min_max", "identity")
_EPS = 1e-4


class Normalizer(nn.Module):
    """``normalize(key, x) = (x - offset[key]) / scale[key]`` over the trailing dimension."""

    def __init__(self, modes: Mapping[str, str], stats: Mapping[str, Mapping]):
        super().__init__()
        self.keys = list(modes)
        for key, mode in modes.items():
            if mode not in MODES:
                raise ValueError(f"normalisation of {key!r} must be one of {MODES}, got {mode!r}")
            if key not in stats:
                raise KeyError(f"no dataset statistics for {key!r}; have {sorted(stats)}")
            offset, scale = _offset_scale(mode, stats[key])
            self.register_buffer(_name(key, "offset"), offset)
            self.register_buffer(_name(key, "scale"), scale)

    def normalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        """Raw values of ``key`` -> normalised (trailing dimension)."""
        return (x - getattr(self, _name(key, "offset"))) / getattr(self, _name(key, "scale"))

    def unnormalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        """Normalised values of ``key`` -> raw."""
        return x * getattr(self, _name(key, "scale")) + getattr(self, _name(key, "offset"))


def _offset_scale(mode: str, stats: Mapping) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(stats["mean"], dtype=torch.float32)
    if mode == "identity":
        return torch.zeros_like(mean), torch.ones_like(mean)
    if mode == "mean_std":
        offset, scale = mean, torch.tensor(stats["std"], dtype=torch.float32)
    else:
        low, high = torch.tensor(stats["min"], dtype=torch.float32), torch.tensor(stats["max"], dtype=torch.float32)
        offset, scale = (high + low) / 2, (high - low) / 2
    return offset, torch.where(scale < _EPS, torch.ones_like(scale), scale)


def _name(key: str, what: str) -> str:
    return f"{key.replace('/', '__')}__{what}"
