"""Fitting a policy to episode stores: the wiring from a :class:`TrainConfig` to the one Trainer.

Opens the store (or mixture of stores), builds the policy from the data's features and statistics, reads cached
encoder features when every encoder is frozen and a cache matches, and trains through
:class:`~embodied.training.trainer.Trainer` with in-training rollout evaluation as a callback.

Run directory::

    config.yaml            the resolved run config
    metrics.jsonl          one JSON line per logged step (train) and per evaluation (eval)
    tensorboard/           event files: tensorboard --logdir <run_dir>
    checkpoints/step_NNNNNNN/   a policy checkpoint (see embodied.policies.checkpoint) + training_state.pt
    checkpoints/last       symlink to the newest one: pass it to `embodied eval checkpoint=...`
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from embodied.configs.checks import at_least, one_of
from embodied.training.distributed import DistributedConfig
from embodied.training.optim import EMAConfig, OptimConfig
from embodied.training.trainer import Callback


@dataclass
class TrainConfig:
    """What `embodied train` does; the env and policy sections are validated by their own schemas."""

    env: Any = None  # the env the data came from (evaluation runs in it)
    policy: Any = None  # the policy config (policy=bc policy.hidden_dims=[256] ...)
    # an episode store from `embodied collect`, or a list of stores (a mixture: windows drawn uniformly over all,
    # each store's statistics kept for policies that normalise per dataset); null: the env's default demo store
    # (50 scripted-expert episodes, collected once into ~/.cache/embodied)
    dataset: Any = None
    steps: int = 3000  # optimiser steps in all (a resumed run continues to this number)
    # samples per optimiser step over all processes: the effective batch, whatever micro_batch_size and the number
    # of torchrun processes are (each of N processes trains on batch_size / N of it)
    batch_size: int = 64
    # samples per forward/backward pass in a process, gradients accumulated up to its share of batch_size; null:
    # the whole share if the memory estimate says it fits, else the largest micro-batch that does
    micro_batch_size: int | None = None
    # under torchrun: strategy auto (ddp with >1 process) | none | ddp | fsdp (the VLA), collective timeout
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    compile: bool = False  # torch.compile the loss (GPU runs; the first steps compile)
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
    plugins: list[str] = field(default_factory=list)  # modules to import first (components of your own)

    CHECKS: ClassVar = {
        "steps": at_least(1), "batch_size": at_least(1), "micro_batch_size": at_least(1), "num_workers": at_least(0),
        "feature_cache": one_of("auto", "require", "off"), "log_every": at_least(1),
        "checkpoint_every": at_least(1), "eval_every": at_least(0), "eval_episodes": at_least(1),
        "eval_num_envs": at_least(1),
    }  # fmt: skip


def check_datasets(job: TrainConfig) -> None:
    """Every named store exists; ``resume`` names its run (ConfigValueError otherwise, before any work)."""
    from embodied.configs.checks import ConfigValueError

    if job.dataset is not None:
        paths = [job.dataset] if isinstance(job.dataset, (str, Path)) else list(job.dataset)
        if not paths:
            raise ConfigValueError("dataset=[] names no store; pass dataset=PATH or a list of stores")
        for path in paths:
            if not Path(path).exists():
                raise ConfigValueError(
                    f"dataset {str(path)!r} does not exist; write one with `embodied collect out={path}`"
                )
    if job.resume and not job.run_dir:
        raise ConfigValueError("resume=true needs run_dir=<the run to continue>, e.g. run_dir=outputs/train/<time>")
    check_distribution(job)


def check_distribution(job: TrainConfig) -> None:
    """FSDP only for policies that name their shardable blocks, without in-training rollouts; the global batch
    splits evenly over the processes (ConfigValueError otherwise)."""
    import os

    from embodied.configs.checks import ConfigValueError
    from embodied.policies import POLICIES

    world = int(os.environ.get("WORLD_SIZE", 1))
    if job.batch_size % world:
        raise ConfigValueError(f"batch_size={job.batch_size} does not split over the {world} torchrun processes; "
                               f"pass a multiple of {world}")  # fmt: skip
    if job.distributed.strategy == "none" and world > 1:
        raise ConfigValueError(f"distributed.strategy=none under {world} torchrun processes would train "
                               "unsynchronised replicas; use auto or ddp (or fsdp), or run one process")  # fmt: skip
    if job.distributed.strategy != "fsdp":
        return
    name = getattr(job.policy, "name", None)
    if name is not None and not hasattr(POLICIES.get(name), "fsdp_units"):
        raise ConfigValueError(
            f"distributed.strategy=fsdp shards large models block by block; policy={name} does not support it "
            "(small enough to replicate): use distributed.strategy=ddp"
        )
    quantization = getattr(getattr(job.policy, "lm", None), "quantization", None)
    if quantization:
        raise ConfigValueError(f"policy.lm.quantization={quantization} keeps the LM in bitsandbytes' packed weights, "
                               "which FSDP cannot shard; use distributed.strategy=ddp (QLoRA replicates the 8/4-bit "
                               "base and synchronises only the adapters)")  # fmt: skip
    if job.eval_every:
        raise ConfigValueError("eval_every>0 cannot run with distributed.strategy=fsdp (rollouts would need every "
                               "shard); set eval_every=0 and evaluate the checkpoint with `embodied eval`")  # fmt: skip
    if job.ema.enabled:
        raise ConfigValueError("ema.enabled=true is not supported with distributed.strategy=fsdp; pass "
                               "ema.enabled=false")  # fmt: skip


def resolve_dataset(job: TrainConfig) -> None:
    """No ``dataset=``: the env's default demo store, collected once into the cache and reused."""
    if job.dataset is None:
        from embodied.evaluation.collection import default_store

        job.dataset = str(default_store(job.env))


def train(job: TrainConfig, run_dir: Path, callbacks: Sequence[Callback] = ()) -> Path:
    """Runs (or resumes) training; returns the final checkpoint directory.

    ``callbacks`` are called as ``callback(step, metrics)`` after every optimiser step.
    """
    from embodied.datasets.mixture import check_env_matches_dataset, is_mixture, open_datasets
    from embodied.datasets.window_dataset import MixtureDataset, WindowDataset
    from embodied.policies.base import feature_key
    from embodied.runtime import seed_everything
    from embodied.training import distributed
    from embodied.training.sampler import step_batches
    from embodied.training.trainer import Trainer, TrainerConfig

    run_dir = Path(run_dir)
    stores = open_datasets(job.dataset)
    mixture = is_mixture(job.dataset)  # a list, even of one store: the mixture path (merged statistics, sampling)
    for store in stores:
        check_env_matches_dataset(job.env, store, check_task=not mixture)
    if job.episodes is not None and mixture:
        raise ValueError("episodes= selects episodes of one store; it cannot be combined with a mixture of stores")
    ctx = distributed.context()
    device = distributed.device_for(job.device)
    policy = build_policy(job, stores if mixture else stores[0], device)  # the same weights on every rank
    if ctx.rank:  # rank 0 keeps a single process's random stream; the others draw their own augmentations
        seed_everything(job.seed + ctx.rank)
    if job.progress and ctx.is_main:
        print(describe_parameters(policy), flush=True)
    features = None if mixture else resolve_feature_cache(job, policy, stores[0])
    if features:
        policy.use_cached_features(features)
        if ctx.is_main:
            print(f"training on cached features of {', '.join(features)} (no image augmentation)", flush=True)
    datasets = [
        WindowDataset(store, policy.key_offsets(), episodes=job.episodes, successful_only=job.successful_only,
                      extra_arrays={feature_key(k): v for k, v in (features or {}).items()},
                      goal_keys=policy.goal_keys())
        for store in stores
    ]  # fmt: skip
    policy.fit_data(datasets)
    dataset = MixtureDataset(datasets, [len(d) for d in datasets]) if mixture else datasets[0]
    run_config = run_config_dict(job)
    config = TrainerConfig(
        steps=job.steps, batch_size=job.batch_size, micro_batch_size=job.micro_batch_size, amp=job.amp,
        optim=job.optim, ema=job.ema, log_every=job.log_every, checkpoint_every=job.checkpoint_every,
        resume=job.resume, progress=job.progress, compile=job.compile, distributed=job.distributed,
    )  # fmt: skip
    trainer = Trainer(
        policy,
        step_batches(dataset, job.batch_size, job.seed, job.num_workers, pin_memory=device.type == "cuda"),
        config,
        run_dir,
        export=lambda model, directory: model.save_pretrained(
            directory, run_config={k: v for k, v in run_config.items() if k != "policy"}, manifest=False
        ),
        resume_check={key: run_config.get(key) for key in ("policy", "dataset", "batch_size", "seed")},
        callbacks=list(callbacks),
        sample_batch=lambda n: dataset.get_batch([i % len(dataset) for i in range(n)]),
        diverged_hint=f", or check the dataset with `embodied data info {job.dataset} --verify`",
    )
    if job.eval_every:
        trainer.callbacks.insert(0, evaluation_callback(job, trainer, run_dir))
    return trainer.fit()


def evaluation_callback(job: TrainConfig, trainer, run_dir: Path) -> Callback:
    """Rollouts of the inference weights (the EMA's when kept) every ``eval_every`` steps and at the end (under
    torchrun the episodes are spread over the ranks, each with its own replica)."""
    from embodied.evaluation.evaluate import eval_env_config, evaluate

    def callback(step: int, metrics: dict) -> dict | None:
        if step % job.eval_every and step != job.steps:
            return None
        policy = trainer.inference_model
        result = evaluate(policy, eval_env_config(job.env, policy), episodes=job.eval_episodes,
                          num_envs=job.eval_num_envs, out_dir=run_dir / "eval" / f"step_{step:07d}", videos=1,
                          progress=False, spread=True)  # fmt: skip
        if job.progress and trainer.ctx.is_main:
            from tqdm.auto import tqdm

            tqdm.write(f"step {step}: success {result['success_rate']:.2f} over {job.eval_episodes} episodes")
        return {"eval": {k: result[k] for k in ("success_rate", "success_ci95", "mean_return", "mean_length")}}

    return callback


def build_policy(job: TrainConfig, stores, device="cpu"):
    """The policy a run starts from (``stores``: one store or a list, a mixture): seeded, so `embodied
    cache-features` builds the very same encoders."""
    from embodied.datasets.mixture import training_inputs
    from embodied.policies import make_policy
    from embodied.runtime import seed_everything

    seed_everything(job.seed)
    mixture = isinstance(stores, (list, tuple))
    features, stats = training_inputs(list(stores) if mixture else [stores], mixture)
    return make_policy(job.policy, features, stats).to(device)


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


def run_config_dict(job: TrainConfig) -> dict:
    """The run's config as plain data (checkpoints' config.yaml, the resume check)."""
    config = asdict(job)
    config["policy"] = asdict(job.policy) if hasattr(job.policy, "__dataclass_fields__") else job.policy
    return config
