"""A policy on franka lift from scripted demonstrations: success over 50 unseen evaluation scenes after a stated
CPU training budget, state-only (proprio + object state) and with one 84 px agentview camera (+ proprio).

    python benchmarks/lift_success.py --policy diffusion_small --stores lift100.zarr lift200.zarr \\
        [--modes state image] [--steps 3000] [--episodes 50] [--set policy.num_inference_steps=10 ...]

Configs are composed exactly as `embodied train policy=<name>` does (the policy's file sets its optimiser and
EMA). A store that does not exist yet is collected first with as many successful expert episodes as the number
in its name (``lift200.zarr`` -> 200). Prints one table; the reference column is the scripted expert (~99%).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="bc", help="a configs/policy/ name: bc, diffusion, diffusion_small")
    parser.add_argument("--stores", nargs="+", default=["outputs/benchmarks/lift100.zarr"])
    parser.add_argument("--modes", nargs="+", default=["state", "image"])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--out", default="outputs/benchmarks/lift_success")
    parser.add_argument("--set", nargs="*", default=[], help="extra train overrides, e.g. policy.horizon=16")
    args = parser.parse_args()

    from embodied.envs.franka.config import FrankaConfig
    from embodied.evaluation.collection import CollectConfig, collect
    from embodied.evaluation.evaluate import eval_env_config, evaluate
    from embodied.evaluation.metrics import format_summary
    from embodied.jobs.config import job_config
    from embodied.policies import load_policy
    from embodied.training.fit_policy import train

    rows = []
    for store in map(Path, args.stores):
        if not store.exists():
            demos = int(re.findall(r"\d+", store.stem)[-1])
            start = time.perf_counter()
            collect(CollectConfig(env=FrankaConfig(task="lift"), episodes=demos, out=str(store)), store.parent)
            print(f"collected {demos} demos in {time.perf_counter() - start:.0f} s")
        for mode in args.modes:
            run_dir = Path(args.out) / args.policy / f"{store.stem}_{mode}"
            overrides = [
                f"policy={args.policy}",
                f"dataset={store}",
                f"steps={args.steps}",
                f"batch_size={args.batch_size}",
                f"checkpoint_every={args.steps}",
                *(["policy.obs_keys=[proprio,state]"] if mode == "state" else []),
                *args.set,
            ]
            job = job_config("train", overrides)
            start = time.perf_counter()
            final = train(job, run_dir)
            train_s = time.perf_counter() - start
            trained = load_policy(final)
            start = time.perf_counter()
            result = evaluate(
                trained, eval_env_config(job.env, trained), args.episodes, out_dir=run_dir / "eval", videos=2
            )
            eval_s = time.perf_counter() - start
            throughput = [
                json.loads(line)["samples_per_s"]
                for line in (run_dir / "metrics.jsonl").read_text().splitlines()
                if '"train"' in line
            ]
            rows.append((store.stem, mode, train_s, sum(throughput) / len(throughput), eval_s, result))
            print(f"{store.stem} {mode}: {format_summary(result)}", flush=True)

    print(
        f"\n{args.policy} on lift, {args.steps} steps x batch {args.batch_size}, CPU, overrides {args.set or 'none'} "
        f"({args.episodes} eval episodes, seeds from 1e9; reference: the scripted expert, ~99%)"
    )
    print("| data | obs | train time | samples/s | success | 95% CI | mean length | eval time | vs expert |")
    print("|---|---|---|---|---|---|---|---|---|")
    for store, mode, train_s, rate, eval_s, r in rows:
        low, high = r["success_ci95"]
        print(
            f"| {store} | {mode} | {train_s / 60:.1f} min | {rate:.0f} | {r['success_rate']:.2f} | {low:.2f}-{high:.2f}"
            f" | {r['mean_length']:.0f} | {eval_s:.0f} s | {r['success_rate'] / 0.99:.2f}x |"
        )


if __name__ == "__main__":
    main()
