"""`embodied train policy=<name> env=<name> dataset=PATH`: fit a policy to an episode store.

AdamW with linear warm-up and a cosine (or constant) schedule, gradient clipping, an optional EMA of the
weights (``torch.optim.swa_utils.AveragedModel``), bf16 autocast on CUDA, a progress bar with loss, learning
rate and throughput, TensorBoard scalars and ``metrics.jsonl``, periodic checkpoints and in-training rollout
evaluation. A non-finite loss stops the run and names the step. ``resume=true`` continues from
``<run_dir>/checkpoints/last`` with the step counter, optimiser, scheduler, EMA and RNG states, and the same
batch order (see :class:`StepBatchSampler`); Ctrl-C saves a checkpoint first.

Run directory::

    config.yaml            the resolved run config
    metrics.jsonl          one JSON line per logged step (train) and per evaluation (eval)
    tensorboard/           event files: tensorboard --logdir <run_dir>
    checkpoints/step_NNNNNNN/   a policy checkpoint (see embodied.policies.base) + training_state.pt
    checkpoints/last       symlink to the newest one: pass it to `embodied eval checkpoint=...`
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from embodied.config_checks import at_least, between, one_of, positive
from embodied.training_utils import (
    StepBatchSampler,
    point_link,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
    write_atomically,
)


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_steps: int = 200
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
    enabled: bool = False  # checkpoints' model.safetensors (and evaluation) then use the averaged weights
    decay: float = 0.999  # the decay (with power > 0: the most it grows to)
    # > 0: warm-up, decay at update k is min(decay, 1 - (1 + k) ** -power) (Diffusion Policy: 0.75), so early
    # averages forget the random initialisation quickly; 0: constant decay
    power: float = 0.0

    CHECKS: ClassVar = {"decay": between(0, 1, high_inclusive=False), "power": at_least(0)}


@dataclass
class TrainConfig:
    """What `embodied train` does; the env and policy sections are validated by their own schemas."""

    env: Any = None
    policy: Any = None
    # an episode store from `embodied collect`, or a list of stores (a mixture: windows drawn uniformly over all,
    # each store's statistics kept for policies that normalise per dataset); null: the env's default demo store
    # (50 scripted-expert episodes, collected once into ~/.cache/embodied)
    dataset: Any = None
    steps: int = 3000  # optimiser steps in all (a resumed run continues to this number)
    batch_size: int = 64  # samples per optimiser step (the effective batch, whatever micro_batch_size is)
    # samples per forward/backward pass, gradients accumulated up to batch_size; null: the whole batch if the
    # memory estimate says it fits, else the largest micro-batch that does
    micro_batch_size: int | None = None
    num_workers: int = 0  # DataLoader workers; 0 reads in this process (the store is preloaded in memory)
    seed: int = 0  # seeds the policy's initialisation and the batch order
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    successful_only: bool = False  # train only on episodes flagged successful
    episodes: list[int] | None = None  # train only on these episode indices (null: all)
    # frozen encoders: read features from `embodied cache-features` (auto: when a matching cache exists;
    # require: fail without one; off: always encode images)
    feature_cache: str = "auto"
    optim: OptimConfig = field(default_factory=OptimConfig)  # AdamW and its learning-rate schedule
    ema: EMAConfig = field(default_factory=EMAConfig)  # an exponential moving average of the weights
    log_every: int = 50  # steps between metrics lines (metrics.jsonl, TensorBoard, the progress bar)
    checkpoint_every: int = 1000  # and at the last step (and on Ctrl-C or SIGTERM)
    eval_every: int = 0  # rollout evaluation every N steps (0: never during training)
    eval_episodes: int = 10  # episodes per in-training evaluation
    eval_num_envs: int = 2  # env processes for in-training evaluation
    resume: bool = False  # continue <run_dir>/checkpoints/last (needs run_dir=)
    run_dir: str | None = None  # default outputs/train/<time>
    progress: bool = True  # progress bar and parameter counts on the terminal

    CHECKS: ClassVar = {
        "steps": at_least(1), "batch_size": at_least(1), "micro_batch_size": at_least(1), "num_workers": at_least(0),
        "feature_cache": one_of("auto", "require", "off"), "log_every": at_least(1),
        "checkpoint_every": at_least(1), "eval_every": at_least(0), "eval_episodes": at_least(1),
        "eval_num_envs": at_least(1),
    }  # fmt: skip


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def train(job: TrainConfig, run_dir: Path, callbacks: Sequence[Callable[[int, dict], None]] = ()) -> Path:
    """Runs (or resumes) training; returns the final checkpoint directory.

    ``callbacks`` are called as ``callback(step, metrics)`` after every optimiser step.
    """
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from embodied.datasets.window_dataset import MixtureDataset, WindowDataset
    from embodied.policies.base import feature_key

    run_dir = Path(run_dir)
    stores = open_datasets(job.dataset)
    mixture = is_mixture(job.dataset)  # a list, even of one store: the mixture path (merged statistics, sampling)
    for store in stores:
        check_env_matches_dataset(job.env, store, check_task=not mixture)
    device = resolve_device(job.device)
    policy = build_policy(job, stores if mixture else stores[0], device)
    if job.progress:
        print(describe_parameters(policy), flush=True)
    features = None if mixture else resolve_feature_cache(job, policy, stores[0])
    if features:
        policy.use_cached_features(features)
        print(f"training on cached features of {', '.join(features)} (no image augmentation)", flush=True)
    if job.episodes is not None and mixture:
        raise ValueError("episodes= selects episodes of one store; it cannot be combined with a mixture of stores")
    datasets = [
        WindowDataset(
            store,
            policy.key_offsets(),
            episodes=job.episodes,
            successful_only=job.successful_only,
            extra_arrays={feature_key(k): v for k, v in (features or {}).items()},
        )
        for store in stores
    ]
    dataset = MixtureDataset(datasets, [len(d) for d in datasets]) if mixture else datasets[0]
    optimizer = make_optimizer(policy, job.optim)
    scheduler = make_scheduler(optimizer, job.optim, job.steps)
    ema = make_ema(policy, job.ema)
    run_config = run_config_dict(job)

    start = 0
    if not job.resume and (run_dir / "checkpoints" / "last").exists():
        raise FileExistsError(
            f"{run_dir} already holds a training run; pass resume=true to continue it or choose another run_dir"
        )
    if job.resume:
        start = restore(run_dir, policy, optimizer, scheduler, ema, run_config)
        print(f"resuming from step {start}", flush=True)

    sampler = StepBatchSampler(len(dataset), job.batch_size, job.seed, start_step=start)
    loader = DataLoader(
        dataset,
        sampler=sampler,  # yields whole batches of indices: one read per key per batch
        batch_size=None,
        num_workers=job.num_workers,
        persistent_workers=job.num_workers > 0,
        # its own generator: starting the loader must not draw from the global RNG a resumed run restores
        generator=torch.Generator().manual_seed(job.seed),
    )
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=job.amp and device.type == "cuda")
    memory = plan_memory(job, policy, dataset, device, autocast)
    if job.progress:
        print(memory.describe(), flush=True)
    log = MetricsLog(run_dir)
    checkpoints = run_dir / "checkpoints"

    def save(step: int) -> Path:
        return save_checkpoint(checkpoints, step, policy, ema, optimizer, scheduler, run_config)

    step = start
    bar = tqdm(total=job.steps, initial=start, desc="train", disable=not job.progress, dynamic_ncols=True)
    window_loss, window_count, window_start = 0.0, 0, time.perf_counter()
    batches = iter(loader)
    try:
        while step < job.steps:
            batch = next(batches)
            policy.train()
            optimizer.zero_grad(set_to_none=True)
            loss, metrics = accumulate_gradients(policy, batch, memory.micro_batch_size, autocast)
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"loss is {loss.item()} at step {step + 1} (metrics {metrics}); {_last_good(checkpoints)}. "
                    f"Lower optim.lr, keep optim.grad_clip > 0, or check the dataset with "
                    f"`embodied data info {job.dataset} --verify`."
                )
            grad_norm = clip_gradients(policy, job.optim.grad_clip)
            if not math.isfinite(grad_norm):
                raise TrainingDiverged(
                    f"gradient norm is {grad_norm} at step {step + 1} (loss {loss.item():.4g}); the weights were not "
                    f"updated and {_last_good(checkpoints)}. Lower optim.lr."
                )
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(policy)
            step += 1
            bar.update(1)
            window_loss += loss.item()
            window_count += 1
            metrics = {"loss": loss.item(), "grad_norm": grad_norm, "lr": scheduler.get_last_lr()[0], **metrics}
            if step % job.log_every == 0 or step == job.steps:
                elapsed = time.perf_counter() - window_start
                rate = window_count * job.batch_size / max(elapsed, 1e-9)
                record = {**metrics, "loss": window_loss / window_count, "samples_per_s": rate}
                log.write("train", step, record)
                bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}", samples_s=f"{rate:.3g}")
                window_loss, window_count, window_start = 0.0, 0, time.perf_counter()
            if step % job.checkpoint_every == 0 or step == job.steps:
                save(step)
            if job.eval_every and (step % job.eval_every == 0 or step == job.steps):
                result = evaluate_during_training(job, ema.module if ema is not None else policy, run_dir, step)
                log.write("eval", step, result)
                bar.write(f"step {step}: success {result['success_rate']:.2f} over {job.eval_episodes} episodes")
            for callback in callbacks:
                callback(step, metrics)
    except KeyboardInterrupt:  # Ctrl-C, and SIGTERM through embodied.processes.Terminated
        if step > start and not (checkpoints / f"step_{step:07d}").exists():
            save(step)
            bar.write(f"interrupted: saved step {step}; continue with resume=true run_dir={run_dir}")
        raise
    finally:
        bar.close()
        log.close()
    return (checkpoints / "last").resolve()


def _last_good(checkpoints: Path) -> str:
    last = checkpoints / "last"
    if last.exists():
        return f"the last good checkpoint is {last.resolve()}"
    return "no checkpoint was written yet"


def accumulate_gradients(policy, batch: dict, micro_batch_size: int, autocast) -> tuple[torch.Tensor, dict]:
    """Forward and backward over ``batch`` in micro-batches of ``micro_batch_size``; each micro-batch's loss is
    weighted by its share of the batch, so the accumulated gradient is the whole batch's (up to per-batch
    normalisation such as padded-step masks). Returns the batch loss (detached) and size-weighted metrics."""
    size = len(batch["action"]) if "action" in batch else len(next(iter(batch.values())))
    if micro_batch_size >= size:
        with autocast:
            loss, metrics = policy.compute_loss(batch)
        if torch.isfinite(loss):
            loss.backward()
        return loss.detach(), metrics
    total = torch.zeros((), device=policy.device)
    summed: dict[str, float] = {}
    for start in range(0, size, micro_batch_size):
        part = {key: value[start : start + micro_batch_size] for key, value in batch.items()}
        share = len(part["action"] if "action" in part else next(iter(part.values()))) / size
        with autocast:
            loss, metrics = policy.compute_loss(part)
        if not torch.isfinite(loss):
            return loss.detach(), metrics
        (loss * share).backward()
        total += loss.detach() * share
        for key, value in metrics.items():
            summed[key] = summed.get(key, 0.0) + float(value) * share
    return total, summed


def plan_memory(job: TrainConfig, policy, dataset, device: torch.device, autocast):
    """Measures what a step needs and picks the micro-batch (see :mod:`embodied.training.memory`)."""
    from embodied.training import memory

    def batch_of(n: int) -> dict:
        return dataset.get_batch([i % len(dataset) for i in range(n)])

    estimate = memory.estimate(policy, batch_of, job.ema.enabled, autocast)
    return memory.plan(estimate, job.batch_size, memory.available_memory(device), device, job.micro_batch_size)


def build_policy(job: TrainConfig, stores, device: torch.device | str = "cpu"):
    """The policy a run starts from (``stores``: one store or a list): seeded, so `embodied cache-features` builds
    the very same encoders."""
    from embodied.policies import make_policy

    seed_everything(job.seed)
    mixture = isinstance(stores, (list, tuple))
    features, stats = training_inputs(list(stores) if mixture else [stores], mixture)
    return make_policy(job.policy, features, stats).to(device)


def is_mixture(dataset: Any) -> bool:
    """``dataset=`` names a mixture when it is a list (of one store or more), one store when it is a path."""
    return dataset is not None and not isinstance(dataset, (str, Path))


def training_inputs(stores: list, mixture: bool | None = None) -> tuple[dict, dict]:
    """(features, statistics) a policy is built from: one store's, or for a mixture (``mixture``, default: more
    than one store) the features all stores share (same shape) and merged statistics; ``stats["datasets"]`` keeps
    each store's own, by store name."""
    from embodied.datasets.stats import merge_stats
    from embodied.datasets.window_dataset import dataset_key

    names = [dataset_key(s) for s in stores]
    if len(set(names)) != len(names):
        raise ValueError(f"the stores of a mixture need distinct directory names (their statistics keys), got {names}")
    if not (len(stores) > 1 if mixture is None else mixture):
        features, stats = dict(stores[0].features), dict(stores[0].stats)
    else:
        first = stores[0].features
        features = {
            k: f for k, f in first.items() if all(k in s.features and s.features[k].shape == f.shape for s in stores)
        }
        stats = merge_stats([s.stats for s in stores])
    stats["datasets"] = {name: store.stats for name, store in zip(names, stores)}
    return features, stats


def resolve_feature_cache(job: TrainConfig, policy, store) -> dict | None:
    """{image key: cached features} when every image encoder is frozen and a matching cache exists."""
    from embodied.encoders.cache import FeatureCacheError, load_features

    if job.feature_cache not in ("auto", "require", "off"):
        raise ValueError(f"feature_cache must be auto, require or off, got {job.feature_cache!r}")
    encoders = policy.image_encoders()
    if job.feature_cache == "off" or not encoders or not policy.reads_pooled_features:
        return None
    if not all(encoder.frozen for encoder in encoders.values()):
        if job.feature_cache == "require":
            raise ValueError("feature_cache=require needs frozen encoders: pass policy.encoder.train=frozen")
        return None
    try:
        return load_features(store, encoders)
    except FeatureCacheError as error:
        if job.feature_cache == "require":
            raise
        print(f"feature cache not used: {error}. Encoding images at every step instead.", flush=True)
        return None


def describe_parameters(policy) -> str:
    """Trainable / total parameter counts of each encoder and of the whole policy."""
    lines = []
    for name, encoder in getattr(policy, "encoders", {}).items():
        counts = encoder.parameter_counts()
        lines.append(
            f"encoder {name} ({encoder.config.name}, train={encoder.config.train}): "
            f"{counts['trainable']:,} of {counts['total']:,} parameters train"
        )
    total = sum(p.numel() for p in policy.parameters())
    trainable = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    lines.append(f"policy {policy.config.name}: {trainable:,} of {total:,} parameters train")
    return "\n".join(lines)


def open_datasets(paths) -> list:
    """``dataset=``: one store path or a list of them (a mixture)."""
    if isinstance(paths, (list, tuple)) or (paths is not None and not isinstance(paths, str)):
        paths = list(paths)
        if not paths:
            raise ValueError("dataset=[] names no store")
        return [open_dataset(p) for p in paths]
    return [open_dataset(paths)]


def open_dataset(path: str | None):
    """The training store, with errors that say what to pass."""
    from embodied.datasets.store import EpisodeStore

    if not path:
        raise ValueError("embodied train needs dataset=PATH: an episode store written by `embodied collect`")
    if not Path(path).exists():
        raise FileNotFoundError(f"dataset {path!r} does not exist; create one with `embodied collect out={path}`")
    store = EpisodeStore(path)
    if store.n_episodes == 0:
        raise ValueError(f"dataset {path} holds no episodes yet")
    return store


def check_env_matches_dataset(env_config: Any, store, check_task: bool = True) -> None:
    """The env used for evaluation must produce what the dataset recorded: same task (not checked for mixtures,
    whose stores hold different tasks), rate and image size."""
    recorded = store.metadata.get("env_config") or {}
    if env_config is None or not recorded:
        return
    ours = asdict(env_config)
    for key in ("name", "task", "control_freq", "image_size") if check_task else ("name", "control_freq", "image_size"):
        if key in recorded and key in ours and recorded[key] != ours[key]:
            raise ValueError(
                f"env.{key}={ours[key]!r} but the dataset {store.path} was collected with {key}={recorded[key]!r}; "
                f"pass env.{key}={recorded[key]} so evaluation matches the data"
            )


def make_optimizer(policy, optim: OptimConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        [p for p in policy.parameters() if p.requires_grad],
        lr=optim.lr,
        betas=tuple(optim.betas),
        weight_decay=optim.weight_decay,
        fused=optim.fused or None,
    )


def make_scheduler(optimizer, optim: OptimConfig, total_steps: int):
    from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup

    if optim.schedule == "cosine":
        return get_cosine_schedule_with_warmup(optimizer, optim.warmup_steps, max(total_steps, 1))
    if optim.schedule == "constant":
        return get_constant_schedule_with_warmup(optimizer, optim.warmup_steps)
    raise ValueError(f"optim.schedule must be 'cosine' or 'constant', got {optim.schedule!r}")


def make_ema(policy, config: EMAConfig):
    """An ``AveragedModel`` of the policy (parameters and buffers) with a constant or warming-up decay."""
    if not config.enabled:
        return None
    from torch.optim.swa_utils import AveragedModel

    if not 0.0 <= config.decay < 1.0 or config.power < 0:
        raise ValueError(f"ema.decay must be in [0, 1) and ema.power >= 0, got {config.decay}, {config.power}")

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], count: torch.Tensor) -> None:
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

    return AveragedModel(policy, multi_avg_fn=update, use_buffers=True)


def clip_gradients(policy, max_norm: float) -> float:
    parameters = [p for p in policy.parameters() if p.grad is not None]
    if max_norm > 0:
        return float(torch.nn.utils.clip_grad_norm_(parameters, max_norm))
    return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in parameters]))) if parameters else 0.0


def run_config_dict(job: TrainConfig) -> dict:
    config = asdict(job)
    config["policy"] = asdict(job.policy) if hasattr(job.policy, "__dataclass_fields__") else job.policy
    return config


def save_checkpoint(checkpoints: Path, step: int, policy, ema, optimizer, scheduler, run_config: dict) -> Path:
    """``checkpoints/step_NNNNNNN`` (written atomically, with a checksum manifest) and the ``last`` link to it."""
    from embodied.integrity import write_manifest

    inference = ema.module if ema is not None else policy

    def write(directory: Path) -> None:
        run = {k: v for k, v in run_config.items() if k != "policy"}
        inference.save_pretrained(directory, run_config=run, manifest=False)
        state = {
            "step": step,
            "model": policy.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "rng": rng_state(),
        }
        torch.save(state, directory / "training_state.pt")
        write_manifest(directory)  # last: it covers every file, training_state.pt included

    checkpoints.mkdir(parents=True, exist_ok=True)
    final = write_atomically(checkpoints / f"step_{step:07d}", write)
    point_link(checkpoints / "last", final)
    return final


def restore(run_dir: Path, policy, optimizer, scheduler, ema, run_config: dict) -> int:
    """Loads ``<run_dir>/checkpoints/last``'s training state (checked against its manifest); returns its step."""
    from omegaconf import OmegaConf

    from embodied.integrity import CheckpointError, verify_manifest

    last = run_dir / "checkpoints" / "last"
    if not (last / "training_state.pt").is_file():
        raise FileNotFoundError(
            f"resume=true but {last} holds no training_state.pt; pass the run_dir of a run to "
            "continue (run_dir=outputs/train/<time>)"
        )
    verify_manifest(last)
    saved = OmegaConf.to_container(OmegaConf.load(last / "config.yaml"))
    differences = []
    for key in ("dataset", "batch_size", "seed"):
        differences += config_differences(saved.get(key), run_config.get(key), key)
    differences += config_differences(saved.get("policy"), run_config.get("policy"), "policy")
    if differences:
        shown = "; ".join(differences[:6]) + ("; ..." if len(differences) > 6 else "")
        raise ValueError(
            f"cannot resume {last.resolve()}: the run's settings changed ({shown}). Pass the checkpoint's values, "
            "or start a new run (another run_dir)"
        )
    try:
        state = torch.load(last / "training_state.pt", map_location=policy.device, weights_only=False)
    except Exception as error:
        raise CheckpointError(
            f"{last / 'training_state.pt'} cannot be loaded: {type(error).__name__}: {error}"
        ) from None
    policy.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if ema is not None and state["ema"] is not None:
        ema.load_state_dict(state["ema"])
    set_rng_state(state["rng"])
    return int(state["step"])


def config_differences(saved: Any, now: Any, path: str) -> list[str]:
    """``path=value`` pairs where two nested configs differ: ``policy.encoder.name: 'cnn' there, 'resnet18' now``."""
    if isinstance(saved, dict) and isinstance(now, dict):
        out = []
        for key in sorted(set(saved) | set(now), key=str):
            out += config_differences(saved.get(key), now.get(key), f"{path}.{key}")
        return out
    if isinstance(saved, (list, tuple)) and isinstance(now, (list, tuple)):
        saved, now = list(saved), list(now)
    return [] if saved == now else [f"{path}: {saved!r} in the checkpoint, {now!r} now"]


def evaluate_during_training(job: TrainConfig, policy, run_dir: Path, step: int) -> dict:
    from embodied.evaluate import eval_env_config, evaluate

    out = run_dir / "eval" / f"step_{step:07d}"
    result = evaluate(
        policy,
        eval_env_config(job.env, policy),
        episodes=job.eval_episodes,
        num_envs=job.eval_num_envs,
        out_dir=out,
        videos=1,
        progress=False,
    )
    return {k: result[k] for k in ("success_rate", "success_ci95", "mean_return", "mean_length")}


class MetricsLog:
    """Scalars to TensorBoard (when installed) and to ``metrics.jsonl`` (read by reports and tests)."""

    def __init__(self, run_dir: Path):
        run_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(run_dir / "metrics.jsonl", "a")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tensorboard = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:
            self._tensorboard = None

    def write(self, split: str, step: int, values: dict) -> None:
        self._jsonl.write(json.dumps({"split": split, "step": step, **values}) + "\n")
        self._jsonl.flush()
        if self._tensorboard is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self._tensorboard.add_scalar(f"{split}/{key}", value, step)

    def close(self) -> None:
        self._jsonl.close()
        if self._tensorboard is not None:
            self._tensorboard.close()
