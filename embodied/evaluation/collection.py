"""Expert demonstrations into an episode store: the env's scripted expert, rolled out by the rollout engine.

Episode k uses seed ``seed + k``; a store that already holds some seeds (an interrupted run) is resumed and only the
missing episodes are collected. Evaluation seeds come from a disjoint range (``EVAL_SEED_OFFSET``), so no
evaluation scene was ever seen in training data. Each episode is committed as soon as it ends, so a killed
collection keeps every finished episode.

Under torchrun (``torchrun --nproc_per_node=N -m embodied.cli collect ...``, across nodes with a shared filesystem)
rank r takes the seeds ``seed + k`` with ``k mod N = r`` and writes its own shard, ``<out>.shards/rank-R-of-N.zarr``
(one writer per store); when every rank is done, rank 0 merges the shards into ``out`` (refusing overlapping seeds,
see :mod:`embodied.datasets.merge`) and removes them. A killed launch resumes each shard, and the merge.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from embodied.configs.checks import ConfigValueError, at_least, between, positive
from embodied.datasets.store import EpisodeStore, StorageConfig
from embodied.features import CAPTION

DEFAULT_EPISODES = 50  # episodes in an env's default demo store (`embodied train` without dataset=)
# Test hook: after this many episodes are committed, the collector stops making progress (workers stay alive), so
# a test can kill it at a point it controls rather than after a sleep that depends on machine speed.
PAUSE_AFTER_ENV = "EMBODIED_COLLECT_PAUSE_AFTER"


@dataclass
class CollectConfig:
    """What `embodied collect` does; the env section is validated by the env's own schema."""

    env: Any = None  # the env config (env=franka env.task=stack ...)
    episodes: int = 100  # successful episodes the store should hold when done (per task, for a suite)
    out: str | None = None  # store path; default: <run dir>/dataset.zarr
    seed: int = 0  # first episode seed; episode k uses seed + k (failed seeds are replaced by later ones)
    num_workers: int = 2  # env processes; 0 runs the env in this process
    expert_noise: float = 0.1  # std of Gaussian noise on the expert's commands (action units)
    # tasks with a hidden preference (env.task=lift_zone): +1 the behaviour the person prefers, -1 the least liked
    expert_style: float = 1.0
    expert_random_style: bool = False  # draw each episode's style uniformly in [-1, 1] from its seed (preference data)
    per_task_stores: bool = False  # a suite (env.suite=mt10): one store per task, out/<task>.zarr; else one store
    keep_failed: bool = False  # also store episodes the expert failed (flagged success=False)
    max_attempts_factor: float = 3.0  # give up after episodes * factor attempts (a broken expert)
    storage: StorageConfig = field(default_factory=StorageConfig)  # chunking and compression of the store
    run_dir: str | None = None  # where outputs go; default outputs/collect/<time>
    plugins: list[str] = field(default_factory=list)  # modules to import first (components of your own)

    CHECKS: ClassVar = {
        "episodes": at_least(1), "seed": at_least(0), "num_workers": at_least(0), "expert_noise": at_least(0),
        "max_attempts_factor": positive(), "expert_style": between(-1, 1),
    }  # fmt: skip


def check_output(config: CollectConfig) -> None:
    """Refuses an ``out=`` that cannot become a store, before any episode is collected."""
    if not config.out:
        return
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise ConfigValueError(f"out={config.out}: is a file, not an episode store; choose another path")
    if out.is_dir() and not (out / "zarr.json").exists() and any(p.name != ".writer.lock" for p in out.iterdir()):
        raise ConfigValueError(
            f"out={config.out}: the folder exists and is not an episode store (no zarr.json); refusing to write "
            "into it. Choose a new path"
        )


def collect(config: CollectConfig, run_dir: Path) -> Path:
    """Collects until the store holds ``config.episodes`` episodes (per task, for a suite); returns the store path
    (for ``per_task_stores``: the folder of per-task stores)."""
    from embodied.configs.checks import check_config
    from embodied.envs import env_config

    check_config(config)
    check_output(config)
    env_cfg = env_config(config.env)
    out = Path(config.out) if config.out else Path(run_dir) / "dataset.zarr"
    tasks = env_cfg.suite_tasks()
    if not tasks:
        _collect_task(config, env_cfg, out, f"collect {_task_name(env_cfg)}")
        merge_shards([out])
        return out
    if config.per_task_stores:
        out = Path(config.out) if config.out else Path(run_dir) / "datasets"
    rows, paths = [], []
    for i, task in enumerate(tasks):
        path = out / f"{task}.zarr" if config.per_task_stores else out
        paths.append(path)
        label = f"[{i + 1}/{len(tasks)}] {task}"
        rows.append((task, *_collect_task(config, env_cfg.for_task(task), path, label, suite_config=env_cfg)))
    merge_shards(list(dict.fromkeys(paths)))
    from embodied.training.distributed import all_gather, context

    counts = all_gather([row[1:] for row in rows])  # every rank's attempts, summed per task
    if context().is_main:
        print(format_task_table([(row[0], *map(sum, zip(*(c[n] for c in counts)))) for n, row in enumerate(rows)]))
    return out


def shard_path(out: Path, rank: int, world_size: int) -> Path:
    """Where rank ``rank`` of ``world_size`` writes its share of store ``out``."""
    return out.parent / f"{out.name}.shards" / f"rank-{rank:03d}-of-{world_size:03d}.zarr"


def shards_of(out: Path) -> list[Path]:
    """Every shard store written for ``out`` (by launches of any number of ranks)."""
    folder = out.parent / f"{out.name}.shards"
    return sorted(p for p in folder.glob("rank-*-of-*.zarr") if (p / "zarr.json").exists()) if folder.is_dir() else []


def merge_shards(paths: list[Path]) -> None:
    """Under torchrun: once every rank is done, rank 0 merges each store's shards into it and removes them; the
    other ranks wait, so every rank returns with the merged store in place. Nothing to do in one process."""
    import shutil

    from embodied.datasets.merge import merge_stores
    from embodied.training.distributed import barrier, context

    ctx = context()
    if not ctx.distributed:
        return
    barrier()
    if ctx.is_main:
        for out in paths:
            shards = shards_of(out)  # this launch's and any an earlier launch of another size left
            if shards:
                added = merge_stores(out, shards)
                print(f"merged {len(shards)} shards into {out} ({added} episodes added)", flush=True)
                shutil.rmtree(shards[0].parent)
    barrier()


def format_task_table(rows: list[tuple[str, int, int]]) -> str:
    """Per-task expert success of this run's attempts (``rows``: task, successes, attempts)."""
    lines = ["| task | expert successes | attempts | rate |", "|---|---|---|---|"]
    for task, successes, attempts in rows:
        rate = f"{successes / attempts:.0%}" if attempts else "(already collected)"
        lines.append(f"| {task} | {successes} | {attempts} | {rate} |")
    return "\n".join(lines)


def _task_name(env_cfg) -> str:
    return getattr(env_cfg, "task", None) or env_cfg.name


def _collect_task(config: CollectConfig, env_cfg, out: Path, label: str, suite_config=None) -> tuple[int, int]:
    """Collects one task's episodes into ``out`` (a store that may hold other tasks: a suite's); returns this run's
    (expert successes, attempts). ``suite_config``: the suite's config, recorded as the store's env config."""
    from functools import partial

    from tqdm.auto import tqdm

    from embodied.evaluation.rollout import ExpertDriven, rollout_in_workers
    from embodied.training.distributed import context

    task = _task_name(env_cfg)
    ctx = context()
    merged, out = out, (shard_path(out, ctx.rank, ctx.world_size) if ctx.distributed else out)
    rank, world = ctx.rank, ctx.world_size
    store = EpisodeStore.open(out, mode="a") if (out / "zarr.json").exists() else None
    done_seeds = _seeds_of(store, task)
    target = config.episodes
    if ctx.distributed:  # this rank's share, counting what the merged store and other shards hold of its seeds
        target = config.episodes // world + (rank < config.episodes % world)
        # shards of launches of another size (this launch's are being written by the other ranks)
        others = [p for p in shards_of(merged) if not p.name.endswith(f"-of-{world:03d}.zarr")]
        for path in [merged] * (merged / "zarr.json").exists() + others:
            with EpisodeStore(path) as whole:
                done_seeds |= {s for s in _seeds_of(whole, task) if (s - config.seed) % world == rank}
    have = len(done_seeds)
    if have >= target:
        if ctx.is_main:
            print(f"{merged} already holds {have} episodes ({task}); nothing to collect")
        if store is not None:
            store.close()
        return 0, 0
    if have:
        print(f"resuming {out}: {have} episodes present ({task}), collecting {target - have} more")

    def seeds():
        k = 0
        while True:
            if k % world == rank and config.seed + k not in done_seeds:
                yield config.seed + k
            k += 1

    bar = tqdm(total=target, initial=have, desc=label + (f" (rank {rank})" if ctx.distributed else ""), unit="ep",
               position=rank)  # fmt: skip
    counts = {"attempts": 0, "successes": 0, "kept": have}
    opened = {"store": store}

    def open_store(features, metadata) -> None:
        if opened["store"] is not None:  # resuming or a suite's next task: the env must produce what it holds
            if CAPTION not in opened["store"].features and any(f.key == CAPTION for f in features):
                print(f"{out} was started before experts wrote stage captions: resuming it without "
                      f"{CAPTION!r} (collect a new store to have them)", flush=True)  # fmt: skip
                opened["drop_captions"] = True
                features = [f for f in features if f.key != CAPTION]
            opened["store"].check_features(features)
        else:
            if suite_config is not None:
                metadata = {**metadata, "env_config": asdict(suite_config), "suite": suite_config.suite_tasks()}
            opened["store"] = EpisodeStore.create(out, features, metadata, config.storage)

    def keep(episode) -> bool:
        writer = opened["store"]
        counts["attempts"] += 1
        counts["successes"] += episode.success
        bar.set_postfix(expert_success=f"{counts['successes'] / counts['attempts']:.0%}",
                        attempts=counts["attempts"], refresh=False)  # fmt: skip
        if opened.get("drop_captions"):
            episode.steps.pop(CAPTION, None)
        if episode.success or config.keep_failed:
            writer.append_episode(
                episode.steps, language_instruction=episode.instruction, terminated=episode.terminated,
                success=episode.success, seed=episode.seed, task=task, env_config=asdict(env_cfg),
            )  # fmt: skip
            counts["kept"] += 1
            bar.update(1)
            _pause_for_tests(writer.n_episodes)
        return counts["kept"] >= target

    try:
        max_attempts = math.ceil((target - have) * config.max_attempts_factor)
        rollout_in_workers(env_cfg, seeds(), keep, workers=config.num_workers,
                           wrappers=[partial(ExpertDriven, noise=config.expert_noise, style=config.expert_style,
                                           random_style=config.expert_random_style)], max_episodes=max_attempts,
                           record=True, on_env=open_store)  # fmt: skip
        if counts["kept"] < target:
            raise RuntimeError(
                f"{task}: the expert succeeded in {counts['successes']} of {counts['attempts']} attempts; stopped "
                f"before reaching {target} episodes (raise max_attempts_factor or set keep_failed=true)"
            )
    finally:
        bar.close()
        if opened["store"] is not None:
            opened["store"].close()
    return counts["successes"], counts["attempts"]


def _seeds_of(store: EpisodeStore | None, task: str) -> set[int]:
    """The seeds of ``task`` a store holds."""
    if store is None:
        return set()
    info = store.episode_info()
    return {int(s) for s, t in zip(info["seed"], info["task"]) if t == task}


def cache_dir() -> Path:
    """Where default stores live: ``$EMBODIED_CACHE``, else ``$XDG_CACHE_HOME/embodied`` (``~/.cache/embodied``)."""
    root = os.environ.get("EMBODIED_CACHE")
    if root:
        return Path(root).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "embodied"


def default_store(env: Any, episodes: int = DEFAULT_EPISODES) -> Path:
    """The env's default demo store for `embodied train` without ``dataset=``: ``episodes`` scripted-expert
    episodes in ``<cache>/datasets/<env>-<task>-<episodes>-<config hash>.zarr``, collected on first use (an
    interrupted collection resumes) and reused afterwards. The hash covers the whole env config, so another
    camera, image size or task gets its own store."""
    import hashlib
    import json

    from embodied.envs import env_config

    env_cfg = env_config(env)
    digest = hashlib.sha256(json.dumps(asdict(env_cfg), sort_keys=True).encode()).hexdigest()[:8]
    task = getattr(env_cfg, "suite", None) or getattr(env_cfg, "task", "default")
    path = cache_dir() / "datasets" / f"{env_cfg.name}-{task}-{episodes}-{digest}.zarr"
    have = 0
    if (path / "zarr.json").exists():
        with EpisodeStore(path) as store:
            have = store.n_episodes
    from embodied.training.distributed import context

    main = context().is_main
    tasks = len(env_cfg.suite_tasks())
    count = f"{episodes} expert episodes" + (f" per task, {tasks} tasks" if tasks else "")
    if have >= episodes * max(1, tasks):
        if main:
            print(f"no dataset= given: training on the default {env_cfg.name} {task} store ({count}, {path})",
                  flush=True)  # fmt: skip
        return path
    if main:
        print(f"no dataset= given: collecting the default {env_cfg.name} {task} store once ({count} into {path}; "
              "set EMBODIED_CACHE to move it)", flush=True)  # fmt: skip
    return collect(CollectConfig(env=env_cfg, episodes=episodes, out=str(path)), path.parent)


def _pause_for_tests(committed: int) -> None:
    limit = os.environ.get(PAUSE_AFTER_ENV)
    if limit and committed >= int(limit):
        print(f"{PAUSE_AFTER_ENV}={limit}: paused after {committed} committed episodes", flush=True)
        while True:
            time.sleep(3600)
