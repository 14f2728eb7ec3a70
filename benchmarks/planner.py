"""The planner (Manipulate by Seeing, ``policy=planner``) vs behaviour cloning at equal demonstrations.

    python benchmarks/planner.py --stores data/lift100.zarr data/pick_place_can100.zarr data/mw_drawer100.zarr \\
        [--demos 10 50 100] [--policies bc planner planner:policy.action_free=true \\
         planner:policy.encoder.train=frozen planner:policy.encoder.pretrained=DIR] \\
        [--steps 1500] [--batch-size 32] [--episodes 20] [--out outputs/benchmarks/planner]

Each store (from `embodied collect`; its env and task are read from the store) is cut to its first N episodes
(``episodes=[0..N-1]``) for every ``--demos`` N; every policy entry (a configs/policy name with optional
``:``-separated overrides; both default to the small cnn encoder, ``encoder=cnn``) trains ``--steps`` x
``--batch-size`` through `embodied train`'s code, then runs ``--episodes`` unseen scenes. Prints one table row
per store and N: success with its 95% interval and training minutes per policy. Results accumulate in
``<out>/planner.json``; a rerun skips what is there (so a grid can be run in pieces); ``--report`` only prints.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

# run as a script, this folder comes first on sys.path, where benchmarks/metaworld.py would shadow the metaworld package
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def run(store: Path, demos: int, entry: str, args) -> dict:
    """Trains and evaluates one policy entry on the first ``demos`` episodes of ``store``."""
    from embodied.datasets.store import EpisodeStore
    from embodied.evaluation.evaluate import eval_env_config, evaluate
    from embodied.jobs.config import job_config
    from embodied.policies import load_policy
    from embodied.training.fit_policy import train

    env = EpisodeStore(store).metadata.get("env_config") or {}
    name, *extra = entry.split(":")
    run_dir = Path(args.out) / f"{store.stem}-{demos}" / entry.replace(":", "_").replace("=", "-").replace("/", "_")
    episodes = ",".join(map(str, range(demos)))
    overrides = [f"policy={name}", "encoder=cnn", f"env={env.get('name', 'franka')}", f"env.task={env['task']}",
                 f"dataset={store}", f"episodes=[{episodes}]", f"steps={args.steps}", f"batch_size={args.batch_size}",
                 f"checkpoint_every={args.steps}", "progress=false", *extra]  # fmt: skip
    job = job_config("train", overrides)
    if run_dir.exists():  # an interrupted run of this entry (finished ones are in the results and skipped)
        shutil.rmtree(run_dir)
    start = time.perf_counter()
    final = train(job, run_dir)
    train_s = time.perf_counter() - start
    policy = load_policy(final)
    result = evaluate(policy, eval_env_config(job.env, policy), args.episodes, out_dir=run_dir / "eval", videos=1,
                      progress=False)  # fmt: skip
    return {"train_s": train_s, **{k: result[k] for k in ("success_rate", "success_ci95", "episodes")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", nargs="+", required=True)
    parser.add_argument("--demos", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--policies", nargs="+", default=["bc", "planner", "planner:policy.action_free=true"])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--out", default="outputs/benchmarks/planner")
    parser.add_argument("--report", action="store_true", help="print the table of what is recorded, train nothing")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = out / "planner.json"
    results = json.loads(record.read_text()) if record.exists() else {}
    for store in map(lambda p: Path(p).resolve(), args.stores):
        for demos in args.demos:
            for entry in args.policies:
                key = f"{store.stem}|{demos}|{entry}"
                if key in results or args.report:
                    continue
                results[key] = run(store, demos, entry, args)
                record.write_text(json.dumps(results, indent=1))
                r = results[key]
                print(f"{key}: success {r['success_rate']:.2f}, trained {r['train_s'] / 60:.1f} min", flush=True)
    print(
        f"\n{args.steps} steps x batch {args.batch_size} each, cnn encoder, CPU; {args.episodes} unseen scenes per row"
    )
    print("| store | demos | " + " | ".join(args.policies) + " |")
    print("|---|---|" + "---|" * len(args.policies))
    for store in map(lambda p: Path(p).resolve(), args.stores):
        for demos in args.demos:
            cells = []
            for entry in args.policies:
                r = results.get(f"{store.stem}|{demos}|{entry}")
                low, high = r["success_ci95"] if r else (0, 0)
                cells.append(
                    f"{r['success_rate']:.2f} [{low:.2f}, {high:.2f}] ({r['train_s'] / 60:.1f} min)" if r else "-"
                )
            print(f"| {store.stem} | {demos} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
