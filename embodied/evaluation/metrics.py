"""Success rates with honest intervals, and the summary of a set of episodes."""

from __future__ import annotations

import math

import numpy as np


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion (honest at small n, unlike the normal approximation)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def summarize(records: list[dict]) -> dict:
    """Episodes, successes, success rate with its interval, mean return and length, and the videos written."""
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
        "videos": [r["video"] for r in records if r.get("video")],
    }


def format_summary(result: dict) -> str:
    """One line: ``success 17/20 = 0.85 (95% CI 0.64-0.95), mean return ..., mean length ...``; for a suite, a line
    per task first and the suite's mean success last."""
    if "per_task" in result:
        width = max(map(len, result["per_task"]))
        lines = [f"{task:<{width}}  {_line(r)}" for task, r in result["per_task"].items()]
        lines.append(f"{'all':<{width}}  {_line(result)}")
        lines.append(f"suite mean success over {len(result['per_task'])} tasks: {result['suite_mean']:.3f}")
        return "\n".join(lines)
    return _line(result)


def _line(result: dict) -> str:
    low, high = result["success_ci95"]
    return (
        f"success {result['successes']}/{result['episodes']} = {result['success_rate']:.2f} "
        f"(95% CI {low:.2f}-{high:.2f}), mean return {result['mean_return']:.2f}, "
        f"mean length {result['mean_length']:.1f}"
    )
