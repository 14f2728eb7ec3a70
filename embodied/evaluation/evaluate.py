"""Policy evaluation in simulation: success rate with a 95% Wilson interval, per-episode records, videos.

Episode ``k`` uses seed ``EVAL_SEED_OFFSET + seed + k``, a range collection never uses. The env renders only the
cameras the policy reads (:meth:`embodied.envs.base.EnvConfig.adapt_to`); a :class:`PolicyRunner` turns the
policy's chunks into one action per step, batched over the vector env's workers. With ``spread=True`` under
torchrun, rank r runs episodes ``k mod N = r`` (each with its own policy replica and env workers), every rank writes
the videos of its episodes, and the records are gathered so every rank returns the same summary (rank 0 writes it).

Output directory::

    results.json   summary (success rate, interval, mean return and length) and one record per episode
    videos/        mp4 of the first ``videos`` episodes, from the env's video camera
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from embodied.envs.base import EVAL_SEED_OFFSET
from embodied.evaluation.metrics import summarize
from embodied.evaluation.video import FrameRecorder, video_name, write_video


def eval_env_config(env_config: Any, policy, max_episode_steps: int | None = None):
    """The training env's config, rendering only the cameras the policy reads (none for state-only policies)."""
    from embodied.envs import env_config as validate
    from embodied.features import camera_name

    config = validate(env_config)
    size = int(policy.features[policy.image_keys[0]].shape[0]) if policy.image_keys else None
    config = config.adapt_to([camera_name(k) for k in policy.image_keys], size)
    if max_episode_steps is not None:
        config = replace(config, max_episode_steps=max_episode_steps)
    return config


def evaluate(
    policy,
    env_config: Any,
    episodes: int,
    num_envs: int = 2,
    seed: int = 0,
    out_dir: str | Path | None = None,
    videos: int = 2,
    progress: bool = True,
    temporal_ensemble: float | None = None,
    spread: bool = False,
) -> dict:
    """Runs ``episodes`` rollouts of ``policy`` in ``env_config`` (per task, for a multi-task suite); returns (and
    writes to ``out_dir/results.json``) the summary with one record per episode. ``spread``: share the episodes
    with the other torchrun ranks (see the module docstring)."""
    from tqdm.auto import tqdm

    from embodied.envs import env_config as validate
    from embodied.envs import make_vector_env
    from embodied.evaluation.rollout import rollout
    from embodied.policies.runner import PolicyRunner
    from embodied.training.distributed import Context, all_gather, context

    env_config = validate(env_config)
    if env_config.suite_tasks():
        return evaluate_suite(policy, env_config, episodes, num_envs, seed, out_dir, videos, progress,
                              temporal_ensemble, spread)  # fmt: skip
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    ctx = context() if spread else Context()
    mine = list(range(ctx.rank, episodes, ctx.world_size))  # this rank's episode indices
    out_dir = Path(out_dir) if out_dir is not None else None
    seeds = [EVAL_SEED_OFFSET + seed + k for k in mine]
    fps = getattr(env_config, "control_freq", 20)
    started = time.perf_counter()
    records: list[dict] = []
    task = getattr(env_config, "task", None)
    bar = tqdm(total=episodes, desc=f"eval {task}" if task else "eval", disable=not (progress and ctx.is_main),
               dynamic_ncols=True)  # fmt: skip

    def record(episode) -> None:
        entry = {"episode": mine[episode.index], "seed": episode.seed, "task": task, "success": episode.success,
                 "return": episode.total_reward, "length": episode.length, "video": None}  # fmt: skip
        if episode.frames and out_dir is not None:
            entry["video"] = write_video(out_dir / "videos" / video_name(entry), episode.frames, fps)
        records.append(entry)
        bar.update(min(ctx.world_size, bar.total - bar.n))  # rank 0's count stands for every rank's
        bar.set_postfix(success=f"{sum(r['success'] for r in records)}/{len(records)}")

    if seeds:
        num_envs = max(1, min(num_envs, len(seeds)))
        envs = make_vector_env(env_config, num_envs, wrappers=[FrameRecorder], autoreset=False)
        try:  # the first `videos` episodes overall: local index i is episode rank + i * world
            rollout(envs, PolicyRunner(policy, num_envs, temporal_ensemble), iter(seeds), record,
                    videos=max(0, -(-(videos - ctx.rank) // ctx.world_size)))  # fmt: skip
        finally:
            bar.close()
            # terminate: workers hold nothing to flush (videos are written here), and a clean close waits on every
            # worker exiting, which would turn one stuck GL teardown into a hung evaluation
            envs.close(terminate=True)
    bar.close()
    if ctx.distributed:
        records = [entry for share in all_gather(records) for entry in share]
    records.sort(key=lambda r: r["episode"])
    return _finish(summarize(records), records, started, env_config, out_dir if ctx.is_main else None)


def evaluate_suite(
    policy,
    env_config,
    episodes: int,
    num_envs: int = 2,
    seed: int = 0,
    out_dir: str | Path | None = None,
    videos: int = 2,
    progress: bool = True,
    temporal_ensemble: float | None = None,
    spread: bool = False,
) -> dict:
    """Every task of the suite ``env_config`` names, ``episodes`` each (results and videos per task in
    ``out_dir/<task>/``); the summary pools all episodes and adds ``per_task`` summaries and ``suite_mean`` (the
    mean of the per-task success rates, the figure multi-task benchmarks report)."""
    out_dir = Path(out_dir) if out_dir is not None else None
    started = time.perf_counter()
    records, per_task = [], {}
    for task in env_config.suite_tasks():
        task_dir = out_dir / task if out_dir is not None else None
        result = evaluate(policy, env_config.for_task(task), episodes, num_envs, seed, task_dir, videos, progress,
                          temporal_ensemble, spread)  # fmt: skip
        records += result["per_episode"]
        per_task[task] = {k: result[k] for k in ("episodes", "successes", "success_rate", "success_ci95",
                                                 "mean_return", "mean_length")}  # fmt: skip
    result = summarize(records)
    result["suite_mean"] = sum(r["success_rate"] for r in per_task.values()) / len(per_task)
    result["per_task"] = per_task
    from embodied.training.distributed import context

    return _finish(result, records, started, env_config, out_dir if context().is_main or not spread else None)


def _finish(result: dict, records: list[dict], started: float, env_config, out_dir: Path | None) -> dict:
    """Adds timing, the env config and the per-episode records; writes ``out_dir/results.json``."""
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["env"] = asdict(env_config)
    result["per_episode"] = records
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results.json").write_text(json.dumps(result, indent=1))
    return result


def evaluate_checkpoint(
    checkpoint: str | Path,
    env_config: Any,
    episodes: int,
    out_dir: Path,
    num_envs: int = 2,
    seed: int = 0,
    videos: int = 2,
    device: str = "auto",
    progress: bool = True,
    max_episode_steps: int | None = None,
    unnorm_key: str | None = None,
    temporal_ensemble: float | None = None,
) -> dict:
    """Loads a checkpoint and evaluates it in ``env_config`` (rendering only the cameras it reads); under torchrun
    every rank loads it and runs its share of the episodes."""
    from embodied.policies import load_policy
    from embodied.training.distributed import device_for

    policy = load_policy(checkpoint, device=device_for(device))
    if unnorm_key is not None:
        if not hasattr(policy.config, "unnorm_key"):
            raise ValueError(f"unnorm_key applies to policies with per-dataset statistics, not {policy.config.name}")
        policy.config.unnorm_key = unnorm_key
    env = eval_env_config(env_config, policy, max_episode_steps)
    return evaluate(policy, env, episodes, num_envs, seed, out_dir, videos, progress, temporal_ensemble, spread=True)
