"""`embodied collect`: run a scripted expert in parallel env processes and write an episode store.

Episode k uses seed ``seed + k``; a store that already holds some seeds (an interrupted run) is resumed
and only the missing episodes are collected. Evaluation seeds are drawn from a disjoint range
(see EVAL_SEED_OFFSET), so no evaluation scene was ever seen in training data.
"""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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


# ---------------------------------------------------------------------- worker side
_worker: dict = {}


def _init_worker(env_config, expert_noise: float) -> None:
    from embodied.envs import make_env

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

    from embodied.envs import env_config

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
    pool = ProcessPoolExecutor(config.num_workers, context, _init_worker, (env_cfg, config.expert_noise))
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
