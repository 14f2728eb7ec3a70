"""`embodied reward score checkpoint=REWARD dataset=STORE`: per-step learned rewards for every episode of a store,
written next to it with a plot of the reward curves."""

from __future__ import annotations

from embodied.rewards.score import ScoreConfig, score

SCHEMA = ScoreConfig


def run(job: ScoreConfig, run_dir) -> None:
    """Scores and prints the agreement with the hidden cost when the store records one."""
    import json

    out = score(job)
    summary = json.loads((out / "summary.json").read_text())
    if "spearman_step" in summary:
        print(f"Spearman with the true reward (-preference_cost): per step {summary['spearman_step']:.3f}, "
              f"per episode return {summary['spearman_episode']:.3f}")  # fmt: skip
    print(f"rewards: {out / 'rewards.npz'}")
    print(f"plot: {out / 'reward_curves.png'}")
