"""The optimiser side of training: AdamW and its learning-rate schedule, an EMA of the weights.

The config dataclasses import nothing heavy, so job configs can use them without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from embodied.configs.checks import at_least, between, one_of, positive


@dataclass
class OptimConfig:
    """AdamW (decoupled weight decay) with linear warm-up, then a cosine or constant learning rate."""

    lr: float = 1e-3  # peak learning rate, reached after warm-up
    weight_decay: float = 1e-4  # AdamW's decoupled weight decay
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # AdamW's moment decay rates
    warmup_steps: int = 200  # linear warm-up from 0 to lr
    schedule: str = "cosine"  # cosine (to zero at the last step) | constant (after warm-up)
    grad_clip: float = 1.0  # max global gradient norm; 0: no clipping
    fused: bool = True  # torch's fused AdamW kernel (same update, one kernel for all parameters)

    CHECKS: ClassVar = {
        "lr": positive(), "weight_decay": at_least(0), "warmup_steps": at_least(0),
        "schedule": one_of("cosine", "constant"), "grad_clip": at_least(0),
    }  # fmt: skip

    def __post_init__(self):
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"optim.betas={list(self.betas)}: must be two values in [0, 1)")


@dataclass
class EMAConfig:
    """An exponential moving average of the weights (Polyak averaging), used for evaluation and checkpoints."""

    enabled: bool = False  # checkpoints' model.safetensors (and evaluation) then use the averaged weights
    decay: float = 0.999  # the decay (with power > 0: the most it grows to)
    # > 0: warm-up, decay at update k is min(decay, 1 - (1 + k) ** -power) (Diffusion Policy: 0.75), so early
    # averages forget the random initialisation quickly; 0: constant decay
    power: float = 0.0

    CHECKS: ClassVar = {"decay": between(0, 1, high_inclusive=False), "power": at_least(0)}


def make_optimizer(model, optim: OptimConfig):
    """AdamW over the model's trainable parameters."""
    import torch

    return torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=optim.lr,
        betas=tuple(optim.betas),
        weight_decay=optim.weight_decay,
        fused=optim.fused or None,
    )


def make_scheduler(optimizer, optim: OptimConfig, total_steps: int):
    """transformers' warm-up + cosine (to zero at ``total_steps``) or warm-up + constant schedule."""
    from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup

    if optim.schedule == "cosine":
        return get_cosine_schedule_with_warmup(optimizer, optim.warmup_steps, max(total_steps, 1))
    if optim.schedule == "constant":
        return get_constant_schedule_with_warmup(optimizer, optim.warmup_steps)
    raise ValueError(f"optim.schedule must be 'cosine' or 'constant', got {optim.schedule!r}")


def make_ema(model, config: EMAConfig):
    """An ``AveragedModel`` of the model (parameters and buffers) with a constant or warming-up decay; None when
    disabled."""
    if not config.enabled:
        return None
    import torch
    from torch.optim.swa_utils import AveragedModel

    if not 0.0 <= config.decay < 1.0 or config.power < 0:
        raise ValueError(f"ema.decay must be in [0, 1) and ema.power >= 0, got {config.decay}, {config.power}")

    @torch.no_grad()
    def update(averaged: list, current: list, count) -> None:
        # AveragedModel copies the weights at the first update and calls this from the second on (count >= 1)
        decay = config.decay
        if config.power > 0:
            decay = min(decay, 1.0 - (1.0 + float(count)) ** -config.power)
        floats = [(a, c) for a, c in zip(averaged, current) if a.is_floating_point()]
        if floats:
            torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], 1.0 - decay)
        for a, c in zip(averaged, current):
            if not a.is_floating_point():
                a.copy_(c)

    return AveragedModel(model, multi_avg_fn=update, use_buffers=True)
