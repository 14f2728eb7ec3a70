"""`embodied eval checkpoint=DIR episodes=50`: roll a checkpoint out in the env it was trained for and report its
success rate (95% Wilson interval), per-episode records and videos."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from embodied.configs.checks import ConfigValueError, at_least


@dataclass
class EvalConfig:
    """What `embodied eval` does."""

    checkpoint: str | None = None  # a checkpoint directory (e.g. outputs/train/<time>/checkpoints/last)
    episodes: int = 50  # rollouts, each in a scene never seen in training
    num_envs: int = 2  # env subprocesses
    seed: int = 0  # episode k uses seed EVAL_SEED_OFFSET + seed + k
    videos: int = 2  # record the first N episodes
    max_episode_steps: int | None = None  # null: the checkpoint's env setting
    task: str | None = None  # evaluate in another task of the env (multi-task checkpoints); null: the trained one
    suite: str | None = None  # evaluate every task of a suite (env=metaworld: mt10 | mt50); null: the trained env's
    unnorm_key: str | None = None  # policies trained on a mixture (openvla): which store's statistics apply
    # ACT's temporal ensembling: query the policy every step and average the overlapping chunks' actions with
    # weights exp(-m * i), oldest first (m, e.g. 0.01); null: execute each chunk's n_action_steps in turn
    temporal_ensemble: float | None = None
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    run_dir: str | None = None  # default outputs/eval/<time>
    progress: bool = True  # progress bar on the terminal
    plugins: list[str] = field(default_factory=list)  # modules to import first (besides the checkpoint's own)

    CHECKS: ClassVar = {
        "episodes": at_least(1), "num_envs": at_least(1), "seed": at_least(0), "videos": at_least(0),
        "max_episode_steps": at_least(1), "temporal_ensemble": at_least(0),
    }  # fmt: skip


SCHEMA = EvalConfig


def check(job: EvalConfig) -> None:
    """A checkpoint directory is named."""
    if not job.checkpoint:
        raise ConfigValueError(
            "embodied eval needs checkpoint=DIR, e.g. checkpoint=outputs/train/<time>/checkpoints/last"
        )
    if not Path(job.checkpoint).is_dir():
        raise ConfigValueError(f"checkpoint {job.checkpoint!r} is not a directory")


def run(job: EvalConfig, run_dir: Path) -> dict:
    """Evaluates ``job.checkpoint`` in the env its config records (another task with ``task=``)."""
    from omegaconf import OmegaConf

    from embodied.evaluation.evaluate import evaluate_checkpoint
    from embodied.evaluation.metrics import format_summary
    from embodied.registry import load_plugins
    from embodied.training.distributed import context

    checkpoint = Path(job.checkpoint)
    saved = OmegaConf.to_container(OmegaConf.load(checkpoint / "config.yaml"))
    if not saved.get("env"):
        raise ValueError(f"{checkpoint}/config.yaml records no env; it was not written by `embodied train`")
    load_plugins(list(saved.get("plugins") or []) + list(job.plugins))  # the policy may be a plugin's
    env = dict(saved["env"])
    if job.task is not None:
        env["task"] = job.task
        env.pop("max_episode_steps", None)  # the new task's own limit
        if env.get("suite"):
            env["suite"] = None  # one task of the suite the checkpoint was trained on
    if job.suite is not None:
        if "suite" not in env:
            raise ConfigValueError(f"suite={job.suite}: env {env.get('name')!r} has no multi-task suites")
        env["suite"] = job.suite
    result = evaluate_checkpoint(
        checkpoint, env, job.episodes, run_dir, job.num_envs, job.seed, job.videos, job.device, job.progress,
        job.max_episode_steps, job.unnorm_key, job.temporal_ensemble,
    )  # fmt: skip
    result["checkpoint"] = str(checkpoint.resolve())
    if context().is_main:  # under torchrun every rank holds the gathered result; one writes it
        (run_dir / "results.json").write_text(json.dumps(result, indent=1))
        print(format_summary(result))
        print(f"results: {run_dir / 'results.json'}")
    return result
