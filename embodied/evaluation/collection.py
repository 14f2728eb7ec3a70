"""Expert demonstrations into an episode store: the env's scripted expert, rolled out by the rollout engine.

Episode k uses seed ``seed + k``; a store that already holds some seeds (an interrupted run) is resumed and only the
missing episodes are collected. Evaluation seeds come from a disjoint range (``EVAL_SEED_OFFSET``), so no
evaluation scene was ever seen in training data. Each episode is committed as soon as it ends, so a killed
collection keeps every finished episode.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from embodied.configs.checks import ConfigValueError, at_least, positive
from embodied.datasets.store import EpisodeStore, StorageConfig

DEFAULT_EPISODES = 50  # episodes in an env's default demo store (`embodied train` without dataset=)
# Test hook: after this many episodes are committed, the collector stops making progress (workers stay alive), so
# a test can kill it at a point it controls rather than after a sleep that depends on machine speed.
PAUSE_AFTER_ENV = "EMBODIED_COLLECT_PAUSE_AFTER"


@dataclass
class CollectConfig:
    """What `embodied collect` does; the env section is validated by the env's own schema."""

    env: Any = None  # the env config (env=franka env.task=stack ...)
    episodes: int = 100  # successful episodes the store should hold when done
    out: str | None = None  # store path; default: <run dir>/dataset.zarr
    seed: int = 0  # first episode seed; episode k uses seed + k (failed seeds are replaced by later ones)
    num_workers: int = 2  # env processes; 0 runs the env in this process
    expert_noise: float = 0.1  # std of Gaussian noise on the expert's commands (action units)
    keep_failed: bool = False  # also store episodes the expert failed (flagged success=False)
    max_attempts_factor: float = 3.0  # give up after episodes * factor attempts (a broken expert)
    storage: StorageConfig = field(default_factory=StorageConfig)  # chunking and compression of the store
    run_dir: str | None = None  # where outputs go; default outputs/collect/<time>
    plugins: list[str] = field(default_factory=list)  # modules to import first (components of your own)

    CHECKS: ClassVar = {
        "episodes": at_least(1), "seed": at_least(0), "num_workers": at_least(0), "expert_noise": at_least(0),
        "max_attempts_factor": positive(),
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
    """Collects until the store holds ``config.episodes`` episodes; returns the store path."""
    from tqdm.auto import tqdm

    from embodied.configs.checks import check_config
    from embodied.envs import env_config
    from embodied.evaluation.rollout import ExpertDriven, rollout_in_workers

    check_config(config)
    check_output(config)
    env_cfg = env_config(config.env)
    out = Path(config.out) if config.out else Path(run_dir) / "dataset.zarr"
    store = EpisodeStore.open(out, mode="a") if (out / "zarr.json").exists() else None
    done_seeds = set(store.episode_info()["seed"].tolist()) if store else set()
    have = store.n_episodes if store else 0
    if have >= config.episodes:
        print(f"{out} already holds {have} episodes; nothing to collect")
        store.close()
        return out
    if have:
        print(f"resuming {out}: {have} episodes present, collecting {config.episodes - have} more")

    def seeds():
        k = 0
        while True:
            if config.seed + k not in done_seeds:
                yield config.seed + k
            k += 1

    from functools import partial

    task = getattr(env_cfg, "task", None) or env_cfg.name
    bar = tqdm(total=config.episodes, initial=have, desc=f"collect {task}", unit="ep")
    counts = {"attempts": 0, "successes": 0}
    opened = {"store": store}

    def open_store(features, metadata) -> None:
        if opened["store"] is not None:  # resuming: the env must produce what the store holds
            opened["store"].check_features(features)
        else:
            opened["store"] = EpisodeStore.create(out, features, metadata, config.storage)

    def keep(episode) -> bool:
        writer = opened["store"]
        counts["attempts"] += 1
        counts["successes"] += episode.success
        bar.set_postfix(expert_success=f"{counts['successes'] / counts['attempts']:.0%}",
                        attempts=counts["attempts"], refresh=False)  # fmt: skip
        if episode.success or config.keep_failed:
            writer.append_episode(
                episode.steps, language_instruction=episode.instruction, terminated=episode.terminated,
                success=episode.success, seed=episode.seed, task=task, env_config=asdict(env_cfg),
            )  # fmt: skip
            bar.update(1)
            _pause_for_tests(writer.n_episodes)
        return writer.n_episodes >= config.episodes

    try:
        max_attempts = math.ceil((config.episodes - have) * config.max_attempts_factor)
        rollout_in_workers(env_cfg, seeds(), keep, workers=config.num_workers,
                           wrappers=[partial(ExpertDriven, noise=config.expert_noise)], max_episodes=max_attempts,
                           record=True, on_env=open_store)  # fmt: skip
        if opened["store"] is None or opened["store"].n_episodes < config.episodes:
            raise RuntimeError(
                f"the expert succeeded in {counts['successes']} of {counts['attempts']} attempts; stopped before "
                f"reaching {config.episodes} episodes (raise max_attempts_factor or set keep_failed=true)"
            )
    finally:
        bar.close()
        if opened["store"] is not None:
            opened["store"].close()
    return out


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
    task = getattr(env_cfg, "task", "default")
    path = cache_dir() / "datasets" / f"{env_cfg.name}-{task}-{episodes}-{digest}.zarr"
    have = 0
    if (path / "zarr.json").exists():
        with EpisodeStore(path) as store:
            have = store.n_episodes
    if have >= episodes:
        print(f"no dataset= given: training on the default {env_cfg.name} {task} store ({episodes} expert episodes, "
              f"{path})", flush=True)  # fmt: skip
        return path
    print(f"no dataset= given: collecting the default {env_cfg.name} {task} store once ({episodes} expert episodes "
          f"into {path}; set EMBODIED_CACHE to move it)", flush=True)  # fmt: skip
    return collect(CollectConfig(env=env_cfg, episodes=episodes, out=str(path)), path.parent)


def _pause_for_tests(committed: int) -> None:
    limit = os.environ.get(PAUSE_AFTER_ENV)
    if limit and committed >= int(limit):
        print(f"{PAUSE_AFTER_ENV}={limit}: paused after {committed} committed episodes", flush=True)
        while True:
            time.sleep(3600)
