"""`embodied demo`: the whole loop on a small scale (collect -> train -> evaluate -> report), sized to finish
in about ten minutes on a 2-core CPU. The report states the measured success rate, whatever it is.

Run directory: ``dataset.zarr``, ``train/`` (a train run directory), ``eval/`` (results.json, videos),
``loss.png`` and ``report.md``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from embodied.configs.checks import at_least
from embodied.training.optim import EMAConfig, OptimConfig


@dataclass
class DemoConfig:
    """What `embodied demo` does: the whole loop, small."""

    env: Any = None  # the env (demo default: franka lift, one 84 px camera)
    policy: Any = None  # the policy (demo default: bc with the cnn encoder)
    episodes: int = 50  # expert demonstrations to collect
    collect_workers: int = 2  # env processes collecting
    steps: int = 2000  # training steps
    batch_size: int = 64  # samples per training step
    optim: OptimConfig = field(default_factory=OptimConfig)  # AdamW and its schedule
    ema: EMAConfig = field(default_factory=EMAConfig)  # an EMA of the weights
    eval_episodes: int = 20  # evaluation rollouts on unseen scenes
    eval_num_envs: int = 2  # env processes evaluating
    videos: int = 2  # evaluation episodes recorded
    seed: int = 0  # collection seeds, initialisation, batches
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    run_dir: str | None = None  # default outputs/demo/<time>
    plugins: list[str] = field(default_factory=list)  # modules to import first (components of your own)

    CHECKS: ClassVar = {
        "episodes": at_least(1), "collect_workers": at_least(0), "steps": at_least(1), "batch_size": at_least(1),
        "eval_episodes": at_least(1), "eval_num_envs": at_least(1), "videos": at_least(0), "seed": at_least(0),
    }  # fmt: skip


SCHEMA = DemoConfig


def run(job: DemoConfig, run_dir: Path) -> Path:
    """Runs the four stages (reusing finished ones when ``run_dir`` is given again), prints the report and returns
    its path."""
    from embodied.evaluation.collection import CollectConfig, collect
    from embodied.evaluation.evaluate import evaluate_checkpoint
    from embodied.training.fit_policy import TrainConfig, train

    run_dir = Path(run_dir)
    timings: dict[str, float] = {}

    start = time.perf_counter()
    print(f"[1/4] collecting {job.episodes} expert episodes", flush=True)
    store = collect(
        CollectConfig(
            env=job.env,
            episodes=job.episodes,
            out=str(run_dir / "dataset.zarr"),
            num_workers=job.collect_workers,
            seed=job.seed,
        ),
        run_dir,
    )
    timings["collect"] = time.perf_counter() - start

    start = time.perf_counter()
    print(f"[2/4] training {job.policy.name} for {job.steps} steps", flush=True)
    train_dir = run_dir / "train"
    train_job = TrainConfig(
        env=job.env,
        policy=job.policy,
        dataset=str(store),
        steps=job.steps,
        batch_size=job.batch_size,
        optim=job.optim,
        ema=job.ema,
        seed=job.seed,
        device=job.device,
        run_dir=str(train_dir),
        checkpoint_every=max(job.steps // 2, 1),
        resume=(train_dir / "checkpoints" / "last").exists(),
    )
    if not _finished(train_dir, job.steps):
        train(train_job, train_dir)
    checkpoint = train_dir / "checkpoints" / "last"
    timings["train"] = time.perf_counter() - start

    start = time.perf_counter()
    print(f"[3/4] evaluating on {job.eval_episodes} unseen scenes", flush=True)
    result = evaluate_checkpoint(
        checkpoint, job.env, job.eval_episodes, run_dir / "eval", job.eval_num_envs, job.seed, job.videos, job.device
    )
    timings["eval"] = time.perf_counter() - start

    print("[4/4] writing the report", flush=True)
    loss_png = plot_loss(train_dir / "metrics.jsonl", run_dir / "loss.png")
    report = run_dir / "report.md"
    report.write_text(render_report(job, result, checkpoint, loss_png, timings))
    print(report.read_text())
    print(f"report: {report}")
    return report


def _finished(train_dir: Path, steps: int) -> bool:
    last = train_dir / "checkpoints" / "last"
    return last.exists() and last.resolve().name == f"step_{steps:07d}"


def plot_loss(metrics: Path, out: Path) -> Path:
    """Training loss against step from ``metrics.jsonl``, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["split"] == "train"]
    figure, axis = plt.subplots(figsize=(6, 3.5), dpi=100)
    axis.plot([r["step"] for r in rows], [r["loss"] for r in rows])
    axis.set_xlabel("step")
    axis.set_ylabel("training loss")
    axis.set_yscale("log")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)
    return out


def render_report(job: DemoConfig, result: dict, checkpoint: Path, loss_png: Path, timings: dict) -> str:
    """The markdown report: data, training, the measured success rate with its interval, videos."""
    from embodied.evaluation.metrics import format_summary

    env = job.env
    videos = "\n".join(f"- {v}" for v in result["videos"]) or "- (none recorded)"
    minutes = {k: f"{v / 60:.1f} min" for k, v in timings.items()}
    return f"""# embodied demo

Task: franka `{getattr(env, "task", "?")}` ({getattr(env, "obs_mode", "?")} observations), policy `{job.policy.name}`.

- Data: {job.episodes} scripted expert episodes ({minutes["collect"]})
- Training: {job.steps} steps, batch {job.batch_size} ({minutes["train"]}); loss curve: {loss_png}
- Evaluation on {result["episodes"]} scenes never seen in training ({minutes["eval"]}):
  **{format_summary(result)}**
- Checkpoint: {checkpoint.resolve()}
  (`embodied eval checkpoint={checkpoint} episodes=50` evaluates it again)

Videos:
{videos}
"""
