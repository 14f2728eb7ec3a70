"""`embodied collect`: run a scripted expert in parallel env processes and write an episode store.

Episode k uses seed ``seed + k``; a store that already holds some seeds (an interrupted run) is resumed
and only the missing episodes are collected. Evaluation seeds are drawn from a disjoint range
(see EVAL_SEED_OFFSET), so no evaluation scene was ever seen in training data.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from embodied.config_checks import ConfigValueError, at_least, positive
from embodied.datasets.store import EpisodeStore, StorageConfig

EVAL_SEED_OFFSET = 1_000_000_000  # evaluation seeds start here; collection seeds stay below


@dataclass
class CollectConfig:
    """What `embodied collect` does; the env section is validated by the env's own schema."""

    env: Any = None
    episodes: int = 100  # successful episodes the store should hold when done
    out: str | None = None  # store path; default: <run dir>/dataset.zarr
    seed: int = 0  # first episode seed; episode k uses seed + k (failed seeds are replaced by later ones)
    num_workers: int = 2  # env processes; 0 runs in this process
    expert_noise: float = 0.1  # std of Gaussian noise on the expert's commands (action units)
    keep_failed: bool = False  # also store episodes the expert failed (flagged success=False)
    max_attempts_factor: float = 3.0  # give up after episodes * factor attempts (a broken expert)
    storage: StorageConfig = field(default_factory=StorageConfig)
    run_dir: str | None = None  # where outputs go; default outputs/collect/<time>

    CHECKS: ClassVar = {
        "episodes": at_least(1), "seed": at_least(0), "num_workers": at_least(0), "expert_noise": at_least(0),
        "max_attempts_factor": positive(),
    }  # fmt: skip


DEFAULT_EPISODES = 50  # episodes in an env's default demo store (`embodied train` without dataset=)
# Test hook: after this many episodes are committed, the collector stops making progress (workers keep running),
# so a test can kill it at a point it controls rather than after a sleep that depends on machine speed.
PAUSE_AFTER_ENV = "EMBODIED_COLLECT_PAUSE_AFTER"


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


# ---------------------------------------------------------------------- worker side
_worker: dict = {}


def _init_worker(env_config, expert_noise: float, owner_pid: int | None = None) -> None:
    from embodied.envs import make_env

    if owner_pid is not None:  # a worker process: exit with the command that started it
        from embodied.processes import die_with_parent

        die_with_parent(owner_pid)
    env = make_env(env_config)
    _worker.update(env=env, noise=expert_noise)


def rollout_expert(seed: int) -> dict:
    """One expert episode in this process's env; returns per-step arrays and episode facts."""
    from embodied.envs.franka.experts import ExpertConfig, make_expert

    env = _worker["env"]
    obs, _ = env.reset(seed=seed)
    expert = make_expert(env, ExpertConfig(noise=_worker["noise"], seed=seed))
    expert.reset()
    keys = [f.key for f in env.features if f.kind != "action"]
    steps: dict[str, list] = {key: [] for key in keys + ["action", "reward"]}
    terminated = truncated = False
    info = {"is_success": False}
    while not (terminated or truncated):
        action = expert.act(obs)
        for key in keys:
            steps[key].append(obs[key])
        steps["action"].append(action)
        obs, reward, terminated, truncated, info = env.step(action)
        steps["reward"].append(reward)
    return {
        "seed": seed,
        "steps": {key: np.stack(values) for key, values in steps.items()},
        "terminated": bool(terminated),
        "success": bool(info["is_success"]),
        "instruction": obs["instruction"],
        "features": env.features,
        "metadata": env.metadata_for_store,
    }


# ---------------------------------------------------------------------- main side
def collect(config: CollectConfig, run_dir: Path) -> Path:
    """Collects until the store holds ``config.episodes`` episodes; returns the store path."""
    from tqdm.auto import tqdm

    from embodied.config_checks import check_config
    from embodied.envs import env_config

    check_config(config)
    check_output(config)
    env_cfg = env_config(config.env)
    out = Path(config.out) if config.out else run_dir / "dataset.zarr"
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

    max_attempts = int(np.ceil((config.episodes - have) * config.max_attempts_factor))
    attempts = successes = 0
    bar = tqdm(total=config.episodes, initial=have, desc=f"collect {env_cfg.task}", unit="ep")
    try:
        for result in _results(env_cfg, config, seeds(), max_attempts):
            attempts += 1
            successes += result["success"]
            bar.set_postfix(expert_success=f"{successes / attempts:.0%}", attempts=attempts, refresh=False)
            if store is not None and attempts == 1:  # resuming: the env must produce what the store holds
                store.check_features(result["features"])
            if result["success"] or config.keep_failed:
                if store is None:
                    store = EpisodeStore.create(out, result["features"], result["metadata"], config.storage)
                store.append_episode(
                    result["steps"],
                    language_instruction=result["instruction"],
                    terminated=result["terminated"],
                    success=result["success"],
                    seed=result["seed"],
                    task=env_cfg.task,
                    env_config=asdict(env_cfg),
                )
                bar.update(1)
                _pause_for_tests(store.n_episodes)
            if store is not None and store.n_episodes >= config.episodes:
                break
        else:
            raise RuntimeError(
                f"the expert succeeded in {successes} of {attempts} attempts; stopped before reaching "
                f"{config.episodes} episodes (raise max_attempts_factor or set keep_failed=true)"
            )
    finally:
        bar.close()
        if store is not None:
            store.close()
    return out


def _results(env_cfg, config: CollectConfig, seeds, max_attempts: int):
    """Expert episodes in completion order, from a pool of env processes (or this process)."""
    if config.num_workers <= 0:
        _init_worker(env_cfg, config.expert_noise)
        for _, seed in zip(range(max_attempts), seeds):
            yield rollout_expert(seed)
        return
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    context = mp.get_context("forkserver")  # fork hangs once an OpenGL context exists
    # concurrent.futures rather than multiprocessing.Pool: a worker that dies (a crash in the simulator or
    # renderer, the OOM killer) raises BrokenProcessPool here instead of leaving its episode pending forever.
    pool = ProcessPoolExecutor(config.num_workers, context, _init_worker, (env_cfg, config.expert_noise, os.getpid()))
    try:
        pending = {pool.submit(rollout_expert, seed) for _, seed in zip(range(config.num_workers * 2), seeds)}
        submitted = len(pending)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                if submitted < max_attempts:
                    pending.add(pool.submit(rollout_expert, next(seeds)))
                    submitted += 1
                try:
                    yield future.result()
                except BrokenProcessPool as error:
                    raise RuntimeError(
                        f"an env worker process died ({error}); finished episodes are stored, run the same "
                        "command again to continue"
                    ) from None
    finally:  # stopping early (enough episodes): drop queued seeds, let the running episodes end
        pool.shutdown(wait=True, cancel_futures=True)
