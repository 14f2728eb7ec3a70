"""BC on franka lift from 100 scripted demonstrations: success over 50 unseen evaluation scenes after a stated
CPU training budget, state-only (proprio + object state) and with one 84 px agentview camera (+ proprio).

    python benchmarks/bc_lift.py [--store PATH] [--modes state image] [--steps 3000] [--episodes 50]

The store is collected once (100 successful expert episodes, seeds 0..) when --store does not exist yet.
Goal: success >= 0.8 in both modes. Prints one table; the reference column is the scripted expert itself.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="outputs/benchmarks/lift100.zarr")
    parser.add_argument("--demos", type=int, default=100)
    parser.add_argument("--modes", nargs="+", default=["state", "image"])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--out", default="outputs/benchmarks/bc_lift")
    parser.add_argument("--set", nargs="*", default=[], help="extra policy overrides, e.g. horizon=16")
    args = parser.parse_args()

    from omegaconf import OmegaConf

    from embodied.collect import CollectConfig, collect
    from embodied.envs.franka.config import FrankaConfig
    from embodied.evaluate import eval_env_config, evaluate, format_summary
    from embodied.policies.base import Policy
    from embodied.policies.bc import BCConfig
    from embodied.train import TrainConfig, train

    store = Path(args.store)
    env = FrankaConfig(task="lift")
    if not store.exists():
        start = time.perf_counter()
        collect(CollectConfig(env=env, episodes=args.demos, out=str(store)), store.parent)
        print(f"collected {args.demos} demos in {time.perf_counter() - start:.0f} s")

    rows = []
    for mode in args.modes:
        run_dir = Path(args.out) / mode
        policy = OmegaConf.merge(OmegaConf.structured(BCConfig), OmegaConf.from_dotlist(args.set))
        if mode == "state":
            policy.obs_keys = ["proprio", "state"]
        job = TrainConfig(
            env=env,
            policy=OmegaConf.to_object(policy),
            dataset=str(store),
            steps=args.steps,
            batch_size=args.batch_size,
            run_dir=str(run_dir),
            checkpoint_every=args.steps,
        )
        start = time.perf_counter()
        final = train(job, run_dir)
        train_s = time.perf_counter() - start
        trained = Policy.from_pretrained(final)
        start = time.perf_counter()
        result = evaluate(trained, eval_env_config(env, trained), args.episodes, out_dir=run_dir / "eval", videos=2)
        eval_s = time.perf_counter() - start
        throughput = [
            json.loads(line)["samples_per_s"]
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()
            if '"train"' in line
        ]
        rows.append((mode, train_s, sum(throughput) / len(throughput), eval_s, result))
        print(f"{mode}: {format_summary(result)}", flush=True)

    print(
        f"\nBC on lift, {args.demos} demos, {args.steps} steps x batch {args.batch_size}, CPU "
        f"({args.episodes} eval episodes, seeds from 1e9; reference: the scripted expert, ~99-100%)"
    )
    print("| obs | train time | samples/s | success | 95% CI | mean length | eval time | vs expert |")
    print("|---|---|---|---|---|---|---|---|")
    for mode, train_s, rate, eval_s, r in rows:
        low, high = r["success_ci95"]
        print(
            f"| {mode} | {train_s / 60:.1f} min | {rate:.0f} | {r['success_rate']:.2f} | {low:.2f}-{high:.2f} | "
            f"{r['mean_length']:.0f} | {eval_s:.0f} s | {r['success_rate'] / 0.99:.2f}x |"
        )


if __name__ == "__main__":
    main()
