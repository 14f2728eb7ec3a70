"""The alignment run's report: before/after on the same scenes, the rounds, curves and side-by-side videos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def write_report(run_dir: Path, job, before: dict, after: dict, rounds: list[dict], before_steps, after_steps,
                 fps: int) -> Path:  # fmt: skip
    """Writes ``report.json``, ``report.md``, ``alignment_curves.png``, ``reward_curves.png`` and
    ``videos/seed_<s>_before_after.mp4``; returns the markdown report's path."""
    run_dir = Path(run_dir)
    videos = side_by_side_videos(run_dir, fps)
    summary = {"checkpoint": str(job.checkpoint), "reward": str(job.reward), "method": job.method,
               "before": before, "after": after, "rounds": rounds, "videos": videos}  # fmt: skip
    (run_dir / "report.json").write_text(json.dumps(summary, indent=1, default=float))
    plot_rounds(rounds, before, after, run_dir / "alignment_curves.png")
    plot_reward_curves(before_steps, after_steps, run_dir / "reward_curves.png", str(job.reward))
    path = run_dir / "report.md"
    path.write_text(markdown(job, before, after, rounds, videos))
    return path


def _rate(metrics: dict, key: str) -> str:
    if key not in metrics:
        return "n/a"
    low, high = metrics[key.replace("_rate", "_ci95")]
    return f"{metrics[key]:.2f} [{low:.2f}, {high:.2f}]"


def markdown(job, before: dict, after: dict, rounds: list[dict], videos: list[str]) -> str:
    """The report as markdown tables."""
    lines = [f"# Alignment of {job.checkpoint}", "",
             f"reward `{job.reward}`, method `{job.method}`, {len(rounds)} rounds of {job.episodes_per_round} rollouts "
             f"and {job.steps_per_round} steps; evaluation on the same {before['episodes']} scenes before and after "
             f"(95% Wilson intervals; preference satisfied: hidden cost <= {job.preference_threshold}).", "",
             "| policy | success | preference satisfied | both | hidden cost | learned return |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for name, m in (("before", before), ("after", after)):
        both = f"{m['success_and_preference_rate']:.2f}" if "success_and_preference_rate" in m else "n/a"
        cost = f"{m['mean_true_cost']:.2f}" if "mean_true_cost" in m else "n/a"
        lines.append(f"| {name} | {_rate(m, 'success_rate')} | {_rate(m, 'preference_rate')} | {both} | {cost} | "
                     f"{m['mean_learned_return']:.3g} |")  # fmt: skip
    lines += ["", "Rounds (rollouts of the policy entering each round):", "",
              "| round | success | preference satisfied | hidden cost | learned return | final loss |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rounds:
        loss = r.get("training", {}).get("loss")
        lines.append(f"| {r['round'] + 1} | {r['success_rate']:.2f} | {r.get('preference_rate', float('nan')):.2f} | "
                     f"{r.get('mean_true_cost', float('nan')):.2f} | {r['mean_learned_return']:.3g} | "
                     f"{loss if loss is None else f'{loss:.4g}'} |")  # fmt: skip
    lines += ["", "![rounds](alignment_curves.png)", "", "![rewards](reward_curves.png)", ""]
    lines += [f"- [{Path(v).name}]({Path(v).relative_to(Path(v).parents[1])})" for v in videos]
    return "\n".join(lines) + "\n"


def plot_rounds(rounds: list[dict], before: dict, after: dict, path: Path) -> None:
    """Per round: success, preference rate, hidden cost and learned return of its rollouts; before/after marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("success_rate", "task success"), ("preference_rate", "preference satisfied"),
              ("mean_true_cost", "hidden cost (episode total)"), ("mean_learned_return", "learned return")]  # fmt: skip
    panels = [(k, t) for k, t in panels if k in before]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), squeeze=False)
    x = np.arange(1, len(rounds) + 1)
    for ax, (key, title) in zip(axes[0], panels):
        ax.plot(x, [r.get(key, np.nan) for r in rounds], "o-", label="round rollouts")
        ax.axhline(before[key], color="tab:gray", ls="--", label="before (eval)")
        ax.axhline(after[key], color="tab:green", ls="--", label="after (eval)")
        ax.set(title=title, xlabel="round")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_reward_curves(before_steps, after_steps, path: Path, reward: str) -> None:
    """The learned per-step reward over time of the evaluation episodes, before and after (mean and spread)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for steps, colour, label in ((before_steps, "tab:gray", "before"), (after_steps, "tab:green", "after")):
        for r in steps:
            ax.plot(r, color=colour, alpha=0.15, lw=0.8)
        length = max(len(r) for r in steps)
        padded = np.full((len(steps), length), np.nan)
        for i, r in enumerate(steps):
            padded[i, : len(r)] = r
        ax.plot(np.nanmean(padded, 0), color=colour, lw=2, label=f"{label} (mean)")
    ax.set(xlabel="step", ylabel="reward", title=f"reward of the evaluation episodes ({Path(reward).name})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def side_by_side_videos(run_dir: Path, fps: int) -> list[str]:
    """For each evaluation seed with a video before and after: one mp4 of both side by side (the shorter episode
    holds its last frame)."""
    import imageio.v2 as imageio

    from embodied.evaluation.video import write_video

    out = []
    for left in sorted((run_dir / "before" / "videos").glob("seed_*.mp4")):
        right = run_dir / "after" / "videos" / left.name
        if not right.exists():
            continue
        a, b = imageio.mimread(left, memtest=False), imageio.mimread(right, memtest=False)
        n = max(len(a), len(b))
        frames = [np.concatenate([a[min(i, len(a) - 1)], b[min(i, len(b) - 1)]], axis=1) for i in range(n)]
        out.append(write_video(run_dir / "videos" / f"{left.stem}_before_after.mp4", frames, fps))
    return out
