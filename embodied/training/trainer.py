"""The one training loop: policies, pretraining objectives (and, later, reward and alignment models) all train here.

``Trainer(model, batches, config, run_dir)`` fits any ``nn.Module`` with ``compute_loss(batch) -> (loss, metrics)``
on the batches ``batches(start_step)`` yields: AdamW with warm-up and a cosine or constant schedule, gradient
clipping, an optional EMA of the weights, bf16 autocast on CUDA, micro-batches with gradient accumulation when the
memory estimate says the batch cannot fit, a progress bar with loss, learning rate and samples/s, TensorBoard
scalars and ``metrics.jsonl``, periodic atomic checkpoints with checksums, and callbacks after every step (in-training
evaluation is one). A non-finite loss or gradient stops the run naming the step. ``resume`` continues from
``<run_dir>/checkpoints/last`` with the step counter, optimiser, scheduler, EMA and RNG states and, since the batch
order depends only on the step, the same batches; Ctrl-C and SIGTERM save the step reached first. Distributed
training (DDP/FSDP) belongs here, in one place.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from embodied.training.checkpoint import restore, save_checkpoint
from embodied.training.metrics import MetricsLog
from embodied.training.optim import EMAConfig, OptimConfig, clip_gradients, make_ema, make_optimizer, make_scheduler

# A callback runs after every optimiser step; what it returns ({split: record}) is logged at that step.
Callback = Callable[[int, dict], "dict[str, dict] | None"]


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became NaN or infinite."""


@dataclass
class TrainerConfig:
    """How the loop runs (what it fits, and on what, is the caller's)."""

    steps: int = 3000  # optimiser steps in all (a resumed run continues to this number)
    batch_size: int = 64  # samples per optimiser step (for samples/s and the memory plan)
    micro_batch_size: int | None = None  # samples per forward/backward; null: chosen by the memory estimate
    amp: bool = True  # bf16 autocast on CUDA (ignored on the CPU)
    optim: OptimConfig = field(default_factory=OptimConfig)  # AdamW and its learning-rate schedule
    ema: EMAConfig = field(default_factory=EMAConfig)  # an EMA of the weights
    log_every: int = 50  # steps between metrics records
    checkpoint_every: int = 1000  # and at the last step (and on Ctrl-C or SIGTERM)
    resume: bool = False  # continue <run_dir>/checkpoints/last
    progress: bool = True  # progress bar and the memory line on the terminal
    split: str = "train"  # the metrics split and progress-bar label (pretraining: "pretrain")


class Trainer:
    """Fits ``model`` (see the module docstring).

    Args:
        model: an ``nn.Module`` with ``compute_loss(batch) -> (scalar loss, {name: float})``, already on ``device``.
        batches: ``batches(start_step)`` -> an iterator of training batches from that step on.
        config: the loop's settings.
        run_dir: where ``metrics.jsonl``, ``tensorboard/`` and ``checkpoints/`` go.
        export: ``export(inference_model, directory)`` writes a checkpoint's inference files (a policy's
            ``save_pretrained``); None: only the training state is saved.
        resume_check: settings a resumed run must share with its checkpoint (dataset, policy, batch size, seed).
        callbacks: ``callback(step, metrics)`` after every step; a returned ``{split: record}`` is logged.
        sample_batch: ``sample_batch(n)`` -> a real batch of ``n`` samples, for the memory estimate (None: skip it).
        diverged_hint: what to check when the loss diverges, appended to the error.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        batches: Callable[[int], Iterator[Any]],
        config: TrainerConfig,
        run_dir: str | Path,
        export: Callable[[Any, Path], None] | None = None,
        resume_check: dict | None = None,
        callbacks: Sequence[Callback] = (),
        sample_batch: Callable[[int], Any] | None = None,
        diverged_hint: str = "",
    ):
        self.model, self.batches, self.config = model, batches, config
        self.run_dir = Path(run_dir)
        self.export, self.resume_check = export, dict(resume_check or {})
        self.callbacks, self.sample_batch, self.diverged_hint = list(callbacks), sample_batch, diverged_hint
        self.device = next(model.parameters()).device
        self.optimizer = make_optimizer(model, config.optim)
        self.scheduler = make_scheduler(self.optimizer, config.optim, config.steps)
        self.ema = make_ema(model, config.ema)
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=config.amp and self.device.type == "cuda")
        self.checkpoints = self.run_dir / "checkpoints"
        self.step = 0

    @property
    def inference_model(self) -> torch.nn.Module:
        """The weights evaluation and checkpoints use: the EMA's when one is kept."""
        return self.ema.module if self.ema is not None else self.model

    def fit(self) -> Path:
        """Runs (or resumes) training to ``config.steps``; returns the final checkpoint directory."""
        from tqdm.auto import tqdm

        config = self.config
        last = self.checkpoints / "last"
        if not config.resume and last.exists():
            raise FileExistsError(
                f"{self.run_dir} already holds a training run; pass resume=true to continue it or choose another "
                "run_dir"
            )
        start = 0
        if config.resume:
            start = restore(last, self.model, self.optimizer, self.scheduler, self.ema, self.resume_check)
            print(f"resuming from step {start}", flush=True)
        micro_batch = self._plan_memory()
        log = MetricsLog(self.run_dir)
        self.step = step = start
        bar = tqdm(total=config.steps, initial=start, desc=config.split, disable=not config.progress,
                   dynamic_ncols=True)  # fmt: skip
        window_loss, window_count, window_start = 0.0, 0, time.perf_counter()
        batches = self.batches(start)
        try:
            while step < config.steps:
                batch = next(batches)
                self.model.train()
                self.optimizer.zero_grad(set_to_none=True)
                loss, metrics = accumulate_gradients(self.model, batch, micro_batch, self.autocast)
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"loss is {loss.item()} at step {step + 1} (metrics {metrics}); {self._last_good()}. "
                        f"Lower optim.lr, keep optim.grad_clip > 0{self.diverged_hint}."
                    )
                grad_norm = clip_gradients(self.model, config.optim.grad_clip)
                if not math.isfinite(grad_norm):
                    raise TrainingDiverged(
                        f"gradient norm is {grad_norm} at step {step + 1} (loss {loss.item():.4g}); the weights were "
                        f"not updated and {self._last_good()}. Lower optim.lr."
                    )
                self.optimizer.step()
                self.scheduler.step()
                if self.ema is not None:
                    self.ema.update_parameters(self.model)
                self.step = step = step + 1
                bar.update(1)
                window_loss += loss.item()
                window_count += 1
                lr = self.scheduler.get_last_lr()[0]
                metrics = {"loss": loss.item(), "grad_norm": grad_norm, "lr": lr, **metrics}
                if step % config.log_every == 0 or step == config.steps:
                    elapsed = time.perf_counter() - window_start
                    rate = window_count * config.batch_size / max(elapsed, 1e-9)
                    record = {**metrics, "loss": window_loss / window_count, "samples_per_s": rate}
                    log.write(config.split, step, record)
                    bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}", samples_s=f"{rate:.3g}")
                    window_loss, window_count, window_start = 0.0, 0, time.perf_counter()
                if step % config.checkpoint_every == 0 or step == config.steps:
                    self.save()
                for callback in self.callbacks:
                    for split, values in (callback(step, metrics) or {}).items():
                        log.write(split, step, values)
        except KeyboardInterrupt:  # Ctrl-C, and SIGTERM through embodied.processes.Terminated
            if step > start and not (self.checkpoints / f"step_{step:07d}").exists():
                self.save()
                bar.write(f"interrupted: saved step {step}; continue with resume=true run_dir={self.run_dir}")
            raise
        finally:
            bar.close()
            log.close()
        return last.resolve()

    def save(self) -> Path:
        """A checkpoint of the current step."""
        return save_checkpoint(self.checkpoints, self.step, self.model, self.ema, self.optimizer, self.scheduler,
                               self.export, self.resume_check)  # fmt: skip

    def _last_good(self) -> str:
        last = self.checkpoints / "last"
        return f"the last good checkpoint is {last.resolve()}" if last.exists() else "no checkpoint was written yet"

    def _plan_memory(self) -> int:
        """The micro-batch size: measured and planned (see :mod:`embodied.training.memory`), or the whole batch."""
        config = self.config
        if self.sample_batch is None:
            return config.micro_batch_size or config.batch_size
        from embodied.training import memory

        estimate = memory.estimate(self.model, self.sample_batch, config.ema.enabled, self.autocast)
        available = memory.available_memory(self.device)
        plan = memory.plan(estimate, config.batch_size, available, self.device, config.micro_batch_size)
        if config.progress:
            print(plan.describe(), flush=True)
        return plan.micro_batch_size


def batch_size_of(batch: Any) -> int:
    """Samples in a batch: the length of its ``action`` (or first) entry."""
    if isinstance(batch, dict):
        return len(batch["action"] if "action" in batch else next(iter(batch.values())))
    return len(batch)


def accumulate_gradients(model, batch: dict, micro_batch_size: int, autocast) -> tuple[torch.Tensor, dict]:
    """Forward and backward over ``batch`` in micro-batches of ``micro_batch_size``; each micro-batch's loss is
    weighted by its share of the batch, so the accumulated gradient is the whole batch's (up to per-batch
    normalisation such as padded-step masks). Returns the batch loss (detached) and size-weighted metrics."""
    size = batch_size_of(batch)
    if micro_batch_size >= size:
        with autocast:
            loss, metrics = model.compute_loss(batch)
        if torch.isfinite(loss):
            loss.backward()
        return loss.detach(), metrics
    total = torch.zeros((), device=next(model.parameters()).device)
    summed: dict[str, float] = {}
    for start in range(0, size, micro_batch_size):
        part = {key: value[start : start + micro_batch_size] for key, value in batch.items()}
        share = batch_size_of(part) / size
        with autocast:
            loss, metrics = model.compute_loss(part)
        if not torch.isfinite(loss):
            return loss.detach(), metrics
        (loss * share).backward()
        total += loss.detach() * share
        for key, value in metrics.items():
            summed[key] = summed.get(key, 0.0) + float(value) * share
    return total, summed
