"""Multi-task, language-conditioned franka: policies trained on one mixture of task stores, evaluated per task.

    python benchmarks/multitask.py --stores lift100.zarr stack100.zarr pick_place_can100.zarr \\
        --policies openvla_small diffusion_small [--steps 3000] [--batch-size 32] [--episodes 50]

Each ``--policies`` entry is a configs/policy/ name, optionally followed by ``:``-separated overrides
(``openvla_small:policy.decoding=parallel:policy.horizon=8:policy.n_action_steps=8``). Every policy trains with the
same budget on ``dataset=[stores...]`` exactly as `embodied train` does (windows drawn uniformly over the
mixture), then runs ``--episodes`` unseen scenes of each store's task. The VLA gets each env's instruction and
un-normalises with that task's statistics (``policy.unnorm_key``); Diffusion Policy has no language input and must
tell the tasks apart from the images. Prints one table: success per task and on average.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", nargs="+", required=True)
    parser.add_argument("--policies", nargs="+", default=["openvla_small", "diffusion_small"])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--out", default="outputs/benchmarks/multitask")
    args = parser.parse_args()

    from embodied.datasets.store import EpisodeStore
    from embodied.evaluation.evaluate import eval_env_config, evaluate
    from embodied.evaluation.metrics import format_summary
    from embodied.jobs.config import job_config
    from embodied.policies import load_policy
    from embodied.training.fit_policy import train

    stores = [EpisodeStore(path) for path in args.stores]
    tasks = {s.name: s.metadata["env_config"]["task"] for s in stores}
    results: dict[str, dict] = {}
    for entry in args.policies:
        name, *extra = entry.split(":")
        run_dir = Path(args.out) / entry.replace(":", "_").replace("=", "-")
        overrides = [
            f"policy={name}",
            f"dataset=[{','.join(str(Path(p).resolve()) for p in args.stores)}]",
            f"steps={args.steps}",
            f"batch_size={args.batch_size}",
            f"checkpoint_every={args.steps}",
            *extra,
        ]
        job = job_config("train", overrides)
        start = time.perf_counter()
        final = train(job, run_dir)
        train_s = time.perf_counter() - start
        results[entry] = {"train_s": train_s, "tasks": {}}
        for key, task in tasks.items():
            policy = load_policy(final)
            if hasattr(policy.config, "unnorm_key"):
                policy.config.unnorm_key = key
            env = eval_env_config(replace(job.env, task=task), policy)
            result = evaluate(policy, env, args.episodes, out_dir=run_dir / "eval" / task, videos=2)
            results[entry]["tasks"][task] = result
            print(f"{entry} {task}: {format_summary(result)}", flush=True)
        (run_dir / "multitask.json").write_text(
            json.dumps({k: {t: r["success_rate"] for t, r in v["tasks"].items()} for k, v in results.items()})
        )

    names = list(tasks.values())
    print(f"\nmulti-task franka: {len(stores)} stores ({', '.join(tasks)}), {args.steps} steps x batch "
          f"{args.batch_size} each, CPU; {args.episodes} unseen scenes per task (seeds from 1e9)")  # fmt: skip
    print("| policy | train time | " + " | ".join(names) + " | mean |")
    print("|---|---|" + "---|" * (len(names) + 1))
    for entry, record in results.items():
        rates = [record["tasks"][t]["success_rate"] for t in names]
        cells = [
            f"{record['tasks'][t]['success_rate']:.2f} ({record['tasks'][t]['success_ci95'][0]:.2f}-"
            f"{record['tasks'][t]['success_ci95'][1]:.2f})"
            for t in names
        ]
        mean = sum(rates) / len(rates)
        print(f"| {entry} | {record['train_s'] / 60:.1f} min | " + " | ".join(cells) + f" | {mean:.2f} |")


if __name__ == "__main__":
    main()
