"""Scripted expert success rate per franka task over many seeds (state-only, real robosuite physics).

    python benchmarks/expert_success.py [--seeds 50] [--tasks lift stack pick_place_can]

Target: >= 95% per task. Episodes run in two env processes, as `embodied collect` runs them.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--tasks", nargs="+", default=["lift", "stack", "pick_place_can"])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from functools import partial

    from embodied.envs.franka.config import FrankaConfig
    from embodied.evaluation.rollout import ExpertDriven, rollout_in_workers

    rows = []
    for task in args.tasks:
        start = time.perf_counter()
        results = []
        rollout_in_workers(FrankaConfig(task=task, obs_mode="state"), iter(range(args.seeds)), results.append,
                           workers=args.workers, wrappers=[partial(ExpertDriven, noise=0.1)])  # fmt: skip
        success = np.array([r.success for r in results])
        lengths = np.array([r.length for r in results])
        failed = sorted(r.seed for r in results if not r.success)
        rows.append((task, success.mean(), lengths.mean(), lengths.max(), failed, time.perf_counter() - start))

    print(
        f"\n| {'task':<16} | {'success':>8} | {'mean len':>8} | {'max len':>7} | {'failed seeds':<14} | {'wall s':>6} |"
    )
    print(f"|{'-' * 18}|{'-' * 10}|{'-' * 10}|{'-' * 9}|{'-' * 16}|{'-' * 8}|")
    for task, rate, mean_len, max_len, failed, wall in rows:
        print(
            f"| {task:<16} | {rate:>7.0%} | {mean_len:>8.1f} | {max_len:>7d} | {str(failed)[:14]:<14} | {wall:>6.0f} |"
        )


if __name__ == "__main__":
    main()
