"""`embodied eval checkpoint=DIR episodes=50`: roll a policy out in simulation and report its success rate.

Episodes run in ``gymnasium.vector`` subprocess envs with resets left to us, so each env starts its next
episode as soon as it finishes one, with that episode's own seed: episode ``k`` uses seed
``EVAL_SEED_OFFSET + seed + k``, a range collection never uses. The policy is called once for all envs that need
a new action chunk, and each chunk is executed ``n_action_steps`` at a time. The success rate comes with a 95%
Wilson score interval (honest at small n, unlike the normal approximation).

Output directory::

    results.json   summary (success rate, interval, mean return and length) and one record per episode
    videos/        mp4 of the first ``videos`` episodes, from the env's video camera
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from embodied.collect import EVAL_SEED_OFFSET
from embodied.config_checks import at_least


@dataclass
class EvalConfig:
    checkpoint: str | None = None  # a checkpoint directory (e.g. outputs/train/<time>/checkpoints/last)
    episodes: int = 50
    num_envs: int = 2  # env subprocesses
    seed: int = 0  # episode k uses seed EVAL_SEED_OFFSET + seed + k
    videos: int = 2  # record the first N episodes
    max_episode_steps: int | None = None  # null: the checkpoint's env setting
    task: str | None = None  # evaluate in another task of the env (multi-task checkpoints); null: the trained one
    unnorm_key: str | None = None  # policies trained on a mixture (openvla): which store's statistics apply
    device: str = "auto"
    run_dir: str | None = None  # default outputs/eval/<time>
    progress: bool = True

    CHECKS: ClassVar = {
        "episodes": at_least(1), "num_envs": at_least(1), "seed": at_least(0), "videos": at_least(0),
        "max_episode_steps": at_least(1),
    }  # fmt: skip


class FrameRecorder(gym.Wrapper):
    """Keeps ``env.render()`` frames of the current episode while ``recording`` is set (set per vector-env worker
    with ``set_attr``). ``pop_frames()`` hands over a finished episode's frames; a vector env calls it in every
    worker, so an episode still running keeps its frames. Rendering happens in the worker, only when asked."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.recording = False
        self.frames: list[np.ndarray] = []
        self.done = False

    def reset(self, **kwargs):
        out = self.env.reset(**kwargs)
        self.frames = [self.env.render()] if self.recording else []
        self.done = False
        return out

    def step(self, action):
        out = self.env.step(action)
        if self.recording:
            self.frames.append(self.env.render())
        self.done = bool(out[2] or out[3])
        return out

    def pop_frames(self) -> list[np.ndarray]:
        if not self.done:
            return []
        frames, self.frames = self.frames, []
        return frames


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def eval_env_config(env_config: Any, policy, max_episode_steps: int | None = None):
    """The training env's config, rendering only the cameras the policy reads (none for state-only policies)."""
    from embodied.envs import env_config as validate
    from embodied.policies.observations import camera_name

    config = validate(env_config)
    names = {f.name for f in fields(config)}
    changes: dict[str, Any] = {}
    if "obs_mode" in names:
        changes["obs_mode"] = "image" if policy.image_keys else "state"
    if "cameras" in names and policy.image_keys:
        changes["cameras"] = [camera_name(k) for k in policy.image_keys]
    if "image_size" in names and policy.image_keys:
        changes["image_size"] = int(policy.features[policy.image_keys[0]].shape[0])
    if max_episode_steps is not None:
        changes["max_episode_steps"] = max_episode_steps
    return replace(config, **changes)


def evaluate(
    policy,
    env_config: Any,
    episodes: int,
    num_envs: int = 2,
    seed: int = 0,
    out_dir: str | Path | None = None,
    videos: int = 2,
    progress: bool = True,
) -> dict:
    """Runs ``episodes`` rollouts; returns (and writes to ``out_dir/results.json``) the results."""
    from tqdm.auto import tqdm

    from embodied.envs import make_vector_env

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    num_envs = max(1, min(num_envs, episodes))
    out_dir = Path(out_dir) if out_dir is not None else None
    seeds = [EVAL_SEED_OFFSET + seed + k for k in range(episodes)]
    n_obs = policy.config.n_obs_steps
    fps = getattr(env_config, "control_freq", 20)
    policy.reset()
    started = time.perf_counter()

    envs = make_vector_env(env_config, num_envs, wrapper=FrameRecorder, autoreset=False)
    records: list[dict] = []
    bar = tqdm(total=episodes, desc="eval", disable=not progress, dynamic_ncols=True)
    try:
        episode_of = np.arange(num_envs)  # which episode each env runs (-1: idle)
        next_episode = num_envs
        recording = [bool(k < videos) for k in episode_of]
        envs.set_attr("recording", recording)
        obs, _ = envs.reset(seed=[seeds[k] for k in episode_of])
        history = [deque([_row(obs, i)] * n_obs, maxlen=n_obs) for i in range(num_envs)]
        queues: list[deque] = [deque() for _ in range(num_envs)]
        returns, lengths = np.zeros(num_envs), np.zeros(num_envs, dtype=np.int64)
        succeeded = np.zeros(num_envs, dtype=bool)
        action_dim = policy.action_dim

        while np.any(episode_of >= 0):
            need = [i for i in range(num_envs) if episode_of[i] >= 0 and not queues[i]]
            if need:
                batch = {
                    key: np.stack([np.stack([h[key] for h in history[i]]) for i in need]) for key in policy.obs_keys
                }
                if "instruction" in history[need[0]][-1]:  # language-conditioned policies read it
                    batch["language_instruction"] = [str(history[i][-1]["instruction"]) for i in need]
                chunk = policy.predict_action(batch).float().cpu().numpy()
                if not np.isfinite(chunk).all():
                    episodes_now = ", ".join(f"{int(episode_of[i])} (seed {seeds[episode_of[i]]})" for i in need)
                    raise ValueError(
                        f"policy {policy.config.name} produced NaN or inf actions in episode(s) {episodes_now}; "
                        "its weights or normalisation statistics are not finite (check the checkpoint and its store "
                        "with `embodied data info PATH --verify`)"
                    )
                for j, i in enumerate(need):
                    queues[i].extend(chunk[j])
            actions = np.zeros((num_envs, action_dim), dtype=np.float32)
            for i in range(num_envs):
                if episode_of[i] >= 0:
                    actions[i] = queues[i].popleft()
            obs, reward, terminated, truncated, info = envs.step(actions)
            success_now = np.asarray(info.get("is_success", np.zeros(num_envs, dtype=bool)), dtype=bool)
            finished = (np.asarray(terminated) | np.asarray(truncated)) & (episode_of >= 0)
            frames_of = envs.call("pop_frames") if any(recording[i] for i in np.flatnonzero(finished)) else None
            reset_mask = np.zeros(num_envs, dtype=bool)
            reset_seeds: list[int | None] = [None] * num_envs
            for i in range(num_envs):
                if episode_of[i] < 0:
                    continue
                returns[i] += reward[i]
                lengths[i] += 1
                succeeded[i] |= success_now[i]
                history[i].append(_row(obs, i))
                if not finished[i]:
                    continue
                k = int(episode_of[i])
                record = {
                    "episode": k,
                    "seed": seeds[k],
                    "success": bool(succeeded[i]),
                    "return": float(returns[i]),
                    "length": int(lengths[i]),
                    "video": None,
                }
                if recording[i] and frames_of is not None and out_dir is not None and frames_of[i]:
                    record["video"] = write_video(out_dir / "videos" / _video_name(record), frames_of[i], fps)
                records.append(record)
                bar.update(1)
                wins = sum(r["success"] for r in records)
                bar.set_postfix(success=f"{wins}/{len(records)}")
                returns[i], lengths[i], succeeded[i] = 0.0, 0, False
                queues[i].clear()
                if next_episode < episodes:
                    episode_of[i] = next_episode
                    reset_mask[i] = True
                    reset_seeds[i] = seeds[next_episode]
                    recording[i] = next_episode < videos
                    next_episode += 1
                else:
                    episode_of[i] = -1
                    recording[i] = False
            if reset_mask.any():
                envs.set_attr("recording", recording)
                obs, _ = envs.reset(seed=reset_seeds, options={"reset_mask": reset_mask})
                for i in np.flatnonzero(reset_mask):
                    history[i] = deque([_row(obs, i)] * n_obs, maxlen=n_obs)
    finally:
        bar.close()
        # terminate: workers hold nothing to flush (videos are written here), and a clean close waits on every
        # worker exiting, which would turn one stuck GL teardown into a hung evaluation
        envs.close(terminate=True)

    records.sort(key=lambda r: r["episode"])
    result = summarize(records)
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["env"] = asdict(env_config)
    result["per_episode"] = records
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results.json").write_text(json.dumps(result, indent=1))
    return result


def summarize(records: list[dict]) -> dict:
    n = len(records)
    wins = sum(r["success"] for r in records)
    low, high = wilson_interval(wins, n)
    return {
        "episodes": n,
        "successes": wins,
        "success_rate": wins / n if n else 0.0,
        "success_ci95": [round(low, 4), round(high, 4)],
        "mean_return": float(np.mean([r["return"] for r in records])) if n else 0.0,
        "mean_length": float(np.mean([r["length"] for r in records])) if n else 0.0,
        "videos": [r["video"] for r in records if r["video"]],
    }


def write_video(path: Path, frames: list[np.ndarray], fps: int) -> str:
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, frames, fps=fps, codec="libx264", macro_block_size=1)
    return str(path)


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
) -> dict:
    """Loads a checkpoint and evaluates it in ``env_config`` (rendering only the cameras it reads)."""
    from embodied.policies.base import Policy
    from embodied.training_utils import resolve_device

    policy = Policy.from_pretrained(checkpoint, device=resolve_device(device))
    if unnorm_key is not None:
        if not hasattr(policy.config, "unnorm_key"):
            raise ValueError(f"unnorm_key applies to policies with per-dataset statistics, not {policy.config.name}")
        policy.config.unnorm_key = unnorm_key
    env = eval_env_config(env_config, policy, max_episode_steps)
    return evaluate(policy, env, episodes, num_envs, seed, out_dir, videos, progress)


def run_eval(job: EvalConfig, run_dir: Path) -> dict:
    """Loads ``job.checkpoint`` and evaluates it in the env it was trained for."""
    from omegaconf import OmegaConf

    if not job.checkpoint:
        raise ValueError("embodied eval needs checkpoint=DIR (e.g. outputs/train/<time>/checkpoints/last)")
    checkpoint = Path(job.checkpoint)
    if not checkpoint.is_dir():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    saved = OmegaConf.to_container(OmegaConf.load(checkpoint / "config.yaml"))
    if not saved.get("env"):
        raise ValueError(f"{checkpoint}/config.yaml records no env; it was not written by `embodied train`")
    env = dict(saved["env"])
    if job.task is not None:
        env["task"] = job.task
        env["max_episode_steps"] = None  # the new task's own limit
    result = evaluate_checkpoint(
        checkpoint,
        env,
        job.episodes,
        run_dir,
        job.num_envs,
        job.seed,
        job.videos,
        job.device,
        job.progress,
        job.max_episode_steps,
        job.unnorm_key,
    )
    result["checkpoint"] = str(checkpoint.resolve())
    (run_dir / "results.json").write_text(json.dumps(result, indent=1))
    return result


def format_summary(result: dict) -> str:
    low, high = result["success_ci95"]
    return (
        f"success {result['successes']}/{result['episodes']} = {result['success_rate']:.2f} "
        f"(95% CI {low:.2f}-{high:.2f}), mean return {result['mean_return']:.2f}, "
        f"mean length {result['mean_length']:.1f}"
    )


def _row(obs: dict, i: int) -> dict:
    return {key: value[i] for key, value in obs.items()}


def _video_name(record: dict) -> str:
    outcome = "success" if record["success"] else "failure"
    return f"episode_{record['episode']:03d}_seed_{record['seed']}_{outcome}.mp4"
