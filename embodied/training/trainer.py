"""The one training loop: policies, pretraining objectives (and, later, reward and alignment models) all train here.

``Trainer(model, batches, config, run_dir)`` fits any ``nn.Module`` with ``compute_loss(batch) -> (loss, metrics)``
on the batches ``batches(start_step)`` yields: AdamW with warm-up and a cosine or constant schedule, gradient
clipping, an optional EMA of the weights, bf16 autocast on CUDA, micro-batches with gradient accumulation when the
memory estimate says the batch cannot fit, a progress bar with loss, learning rate and samples/s, TensorBoard
scalars and ``metrics.jsonl``, periodic atomic checkpoints with checksums, and callbacks after every step (in-training
evaluation is one). A non-finite loss or gradient stops the run naming the step. ``resume`` continues from
``<run_dir>/checkpoints/last`` with the step counter, optimiser, scheduler, EMA and RNG states and, since the batch
order depends only on the step, the same batches; Ctrl-C and SIGTERM save the step reached first.

Distributed training lives here, in one place: under ``torchrun`` each rank trains on its ``batch_size / world``
share of every global batch (``batches`` yields the rank's share, see :func:`~embodied.training.sampler.step_batches`)
through DDP or FSDP2 (:mod:`embodied.training.parallel`); the loss and metrics are averaged over ranks every step (so
a divergence stops every rank at the same step); rank 0 alone logs and writes checkpoints, which are consolidated
and resume on any number of ranks; each rank's RNG state is saved, so a resumed run on as many ranks continues
exactly.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from embodied.runtime import rng_state, seed_everything, set_rng_state
from embodied.training import distributed
from embodied.training.checkpoint import load_training_state, save_checkpoint
from embodied.training.distributed import DistributedConfig
from embodied.training.metrics import MetricsLog
from embodied.training.optim import EMAConfig, OptimConfig, make_ema, make_optimizer, make_scheduler
from embodied.training.parallel import Parallel

# Test hook: after the checkpoint of this step is written, the loop stops making progress (the process stays alive),
# so a test can kill a run at a point it controls rather than after a sleep that depends on machine speed.
PAUSE_AFTER_ENV = "EMBODIED_TRAIN_PAUSE_AFTER"

# A callback runs after every optimiser step; what it returns ({split: record}) is logged at that step.
Callback = Callable[[int, dict], "dict[str, dict] | None"]


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became NaN or infinite."""


@dataclass
class TrainerConfig:
    """How the loop runs (what it fits, and on what, is the caller's)."""

    steps: int = 3000  # optimiser steps in all (a resumed run continues to this number)
    batch_size: int = 64  # samples per optimiser step over all ranks (each rank gets batch_size / world)
    micro_batch_size: int | None = None  # samples per forward/backward on a rank; null: chosen by the memory estimate
    amp: bool = True  # bf16 autocast on CUDA (ignored on the CPU)
    compile: bool = False  # torch.compile the loss (worth it on a GPU for long runs; the first steps compile)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)  # DDP / FSDP under torchrun
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
        self.ctx = distributed.context()
        strategy = distributed.resolve_strategy(config.distributed.strategy, self.ctx.world_size,
                                                distributed.launched())  # fmt: skip
        if config.batch_size % self.ctx.world_size:
            raise ValueError(
                f"batch_size={config.batch_size} does not split over {self.ctx.world_size} processes; pass a multiple "
                f"of {self.ctx.world_size}"
            )
        self.rank_batch_size = config.batch_size // self.ctx.world_size
        if strategy == "fsdp" and config.ema.enabled:
            raise ValueError("ema.enabled=true is not supported with distributed.strategy=fsdp (the average would "
                             "need its own shards); pass ema.enabled=false")  # fmt: skip
        self.ema = make_ema(model, config.ema)
        probe = sample_batch(2) if sample_batch is not None and strategy == "ddp" else None
        self.parallel = Parallel(model, strategy, self.ctx, config.distributed.find_unused_parameters, probe)
        if config.compile:
            # every compute_loss returns its metrics as floats (loss.item()): captured in the graph rather than a
            # graph break (and a page of warnings) per policy
            torch._dynamo.config.capture_scalar_outputs = True
            self.parallel.runner = torch.compile(self.parallel.runner)
        self.optimizer = make_optimizer(model, config.optim)  # after sharding: FSDP replaces the parameters
        self.scheduler = make_scheduler(self.optimizer, config.optim, config.steps)
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

        config, main = self.config, self.ctx.is_main
        last = self.checkpoints / "last"
        if not config.resume and last.exists():
            raise FileExistsError(
                f"{self.run_dir} already holds a training run; pass resume=true to continue it or choose another "
                "run_dir"
            )
        start = self._resume(last) if config.resume else 0
        micro_batch = self._plan_memory()
        log = MetricsLog(self.run_dir) if main else None
        self.step = step = start
        bar = tqdm(total=config.steps, initial=start, desc=config.split, disable=not (config.progress and main),
                   dynamic_ncols=True)  # fmt: skip
        window_loss, window_count, window_start = 0.0, 0, time.perf_counter()
        batches = self.batches(start)
        try:
            while step < config.steps:
                batch = to_device(next(batches), self.device)
                self.model.train()
                self.optimizer.zero_grad(set_to_none=True)
                loss, metrics = accumulate_gradients(self.parallel, batch, micro_batch, self.autocast,
                                                     always_backward=self.ctx.distributed)  # fmt: skip
                loss, metrics = self._reduce(loss, metrics)
                if not math.isfinite(loss):
                    raise TrainingDiverged(
                        f"loss is {loss} at step {step + 1} (metrics {metrics}); {self._last_good()}. "
                        f"Lower optim.lr, keep optim.grad_clip > 0{self.diverged_hint}."
                    )
                grad_norm = self.parallel.clip_gradients(config.optim.grad_clip)
                if not math.isfinite(grad_norm):
                    raise TrainingDiverged(
                        f"gradient norm is {grad_norm} at step {step + 1} (loss {loss:.4g}); the weights were "
                        f"not updated and {self._last_good()}. Lower optim.lr."
                    )
                self.optimizer.step()
                self.scheduler.step()
                if self.ema is not None:
                    self.ema.update_parameters(self.model)
                self.step = step = step + 1
                bar.update(1)
                window_loss += loss
                window_count += 1
                lr = self.scheduler.get_last_lr()[0]
                metrics = {"loss": loss, "grad_norm": grad_norm, "lr": lr, **metrics}
                if log is not None and (step % config.log_every == 0 or step == config.steps):
                    elapsed = time.perf_counter() - window_start
                    rate = window_count * config.batch_size / max(elapsed, 1e-9)
                    record = {**metrics, "loss": window_loss / window_count, "samples_per_s": rate}
                    log.write(config.split, step, record)
                    bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}", samples_s=f"{rate:.3g}")
                if step % config.log_every == 0 or step == config.steps:
                    window_loss, window_count, window_start = 0.0, 0, time.perf_counter()
                if step % config.checkpoint_every == 0 or step == config.steps:
                    self.save()
                    _pause_for_tests(step)
                for callback in self.callbacks:  # on every rank: an evaluation may spread its episodes over them
                    for split, values in (callback(step, metrics) or {}).items():
                        if log is not None:
                            log.write(split, step, values)
        except KeyboardInterrupt:  # Ctrl-C, and SIGTERM through embodied.processes.Terminated
            if step > start and not (self.checkpoints / f"step_{step:07d}").exists():
                if self.parallel.sharded:  # gathering shards needs every rank at the same point: not now
                    if main:
                        bar.write(f"interrupted at step {step}; an FSDP run resumes from its last periodic checkpoint")
                elif main:
                    self.save(collective=False)
                    bar.write(f"interrupted: saved step {step}; continue with resume=true run_dir={self.run_dir}")
            raise
        finally:
            bar.close()
            if log is not None:
                log.close()
        return last.resolve()

    def save(self, collective: bool = True) -> Path | None:
        """A checkpoint of the current step, written by rank 0 (every rank calls it: FSDP gathers its shards and
        each rank's RNG state is collected); ``collective=False``: rank 0 alone, with its own RNG state only."""
        model_state = self.parallel.model_state()
        optimizer_state = self.parallel.optimizer_state(self.optimizer)
        rng = distributed.all_gather(rng_state()) if collective else [rng_state()]
        if not self.ctx.is_main:
            return None
        state = {
            "step": self.step, "model": model_state, "optimizer": optimizer_state,
            "scheduler": self.scheduler.state_dict(), "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": rng, "world_size": self.ctx.world_size, "resume_check": self.resume_check,
        }  # fmt: skip
        with self.parallel.export_model(model_state) as model:
            inference = self.ema.module if self.ema is not None else model
            export = (lambda directory: self.export(inference, directory)) if self.export is not None else None
            return save_checkpoint(self.checkpoints, self.step, state, export)

    def _last_good(self) -> str:
        last = self.checkpoints / "last"
        return f"the last good checkpoint is {last.resolve()}" if last.exists() else "no checkpoint was written yet"

    def _resume(self, last: Path) -> int:
        """Loads ``last`` into the model, optimiser, scheduler, EMA and this rank's RNG; returns its step."""
        # on the CPU: loading moves tensors to the parameters' devices, RNG states must stay CPU tensors, and under
        # FSDP no GPU holds the whole state
        state = load_training_state(last, self.resume_check, "cpu")
        self.parallel.load_model_state(state["model"])
        self.parallel.load_optimizer_state(self.optimizer, state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        rngs = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]
        step = int(state["step"])
        rank = self.ctx.rank
        set_rng_state(rngs[rank] if rank < len(rngs) else rngs[0])
        if len(rngs) != self.ctx.world_size:  # another number of ranks: fresh streams, reproducible from the step
            if rank:
                seed_everything(step * 1009 + rank)
            if self.ctx.is_main:
                saved = state.get("world_size", len(rngs))
                why = (
                    f"the run was saved on {saved} processes, resumed on {self.ctx.world_size}"
                    if saved != self.ctx.world_size
                    else "this checkpoint was saved on an interrupt, with rank 0's RNG only"
                )
                print(f"{why}: the batches are the same, the other ranks' random streams are re-seeded",
                      flush=True)  # fmt: skip
        if self.ctx.is_main:
            print(f"resuming from step {step}", flush=True)
        return step

    def _reduce(self, loss: torch.Tensor, metrics: dict) -> tuple[float, dict]:
        """The loss and metrics averaged over ranks (one all-reduce), as floats."""
        keys = sorted(metrics)
        values = distributed.mean_across([loss.item(), *(float(metrics[k]) for k in keys)])
        return values[0], dict(zip(keys, values[1:]))

    def _plan_memory(self) -> int:
        """The micro-batch size: measured and planned (see :mod:`embodied.training.memory`), or the whole batch."""
        config = self.config
        if self.sample_batch is None or self.parallel.sharded:  # FSDP: the estimate would gather every shard
            return config.micro_batch_size or self.rank_batch_size
        from embodied.training import memory

        estimate = memory.estimate(self.model, self.sample_batch, config.ema.enabled, self.autocast)
        available = memory.available_memory(self.device)
        plan = memory.plan(estimate, self.rank_batch_size, available, self.device, config.micro_batch_size)
        if config.progress and self.ctx.is_main:
            print(plan.describe(), flush=True)
        return plan.micro_batch_size


def batch_size_of(batch: Any) -> int:
    """Samples in a batch: the length of its ``action`` (or first) entry."""
    if isinstance(batch, dict):
        return len(batch["action"] if "action" in batch else next(iter(batch.values())))
    return len(batch)


def _pause_for_tests(step: int) -> None:
    limit = os.environ.get(PAUSE_AFTER_ENV)
    if limit and step >= int(limit):
        print(f"{PAUSE_AFTER_ENV}={limit}: paused after the checkpoint of step {step}", flush=True)
        while True:
            time.sleep(3600)


def to_device(batch: Any, device: torch.device) -> Any:
    """The batch's tensors on ``device``; CUDA copies are non-blocking (the DataLoader pins host memory)."""
    if device.type != "cuda" or not isinstance(batch, dict):
        return batch
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def accumulate_gradients(parallel, batch: dict, micro_batch_size: int, autocast, always_backward: bool = False):
    """Forward and backward over ``batch`` in micro-batches of ``micro_batch_size`` (through
    :class:`~embodied.training.parallel.Parallel`: gradients are synchronised over ranks on the last micro-batch
    only); each micro-batch's loss is weighted by its share of the batch, so the accumulated gradient is the whole
    batch's (up to per-batch normalisation such as padded-step masks). A non-finite loss skips the backward pass
    unless ``always_backward`` (distributed: every rank must join the gradient all-reduce). Returns the batch loss
    (detached) and size-weighted metrics."""
    size = batch_size_of(batch)
    if micro_batch_size >= size:
        with autocast:
            loss, metrics = parallel.compute_loss(batch)
        if always_backward or torch.isfinite(loss):
            loss.backward()
        return loss.detach(), metrics
    total = torch.zeros((), device=next(parallel.model.parameters()).device)
    summed: dict[str, float] = {}
    starts = list(range(0, size, micro_batch_size))
    for start in starts:
        part = {key: value[start : start + micro_batch_size] for key, value in batch.items()}
        share = batch_size_of(part) / size
        with parallel.no_sync() if start != starts[-1] else contextlib.nullcontext():
            with autocast:
                loss, metrics = parallel.compute_loss(part)
            if not (always_backward or torch.isfinite(loss)):
                return loss.detach(), metrics
            (loss * share).backward()
        total += loss.detach() * share
        for key, value in metrics.items():
            summed[key] = summed.get(key, 0.0) + float(value) * share
    return total, summed
