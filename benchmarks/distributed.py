"""Distributed training and rollouts on one machine: 1 vs 2 torchrun processes (gloo) at the same global batch, the
share of a step spent communicating, and rollout episodes/s with 1, 2 and 4 workers (env processes of one command,
and torchrun ranks with a store shard each).

    python benchmarks/distributed.py [--work /tmp/embodied_distributed] [--store PATH] [--steps 60]

Training: `embodied train policy=bc` (cnn encoder, 84 px) through the CLI, as a user runs it, global batch 64; the
samples/s of the second half (warm-up excluded). Communication share: each rank times an all-reduce of as many
floats as the policy has trainable parameters (what DDP sends per step), over the 2-process step time. Rollouts:
`embodied collect` of state-only lift episodes (scripted expert, committed to a zarr store). Run it alone: on 2
cores anything beside it distorts the figures, and 2 processes on 2 cores share them with their env workers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

CLI = [sys.executable, "-m", "embodied.cli"]


def torchrun(nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]


def run(command: list[str], env: dict | None = None) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{' '.join(command[:8])} ... failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return time.perf_counter() - started


def train_rate(work: Path, store: str, nproc: int, steps: int, batch: int) -> float:
    run_dir = work / f"train_{nproc}"
    args = ["train", "env=franka", "env.task=lift", f"dataset={store}", "policy=bc", f"batch_size={batch}",
            f"steps={steps}", f"log_every={steps // 2}", f"checkpoint_every={steps}", "progress=false",
            f"run_dir={run_dir}"]  # fmt: skip
    launcher = [*torchrun(nproc), "-m", "embodied.cli"] if nproc > 1 else CLI
    run([*launcher, *args])
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["split"] == "train"][-1]["samples_per_s"]


def allreduce_ms(numel: int) -> float:
    """Under torchrun: the mean time of an all-reduce of ``numel`` float32 (gloo), printed by rank 0."""
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    tensor = torch.ones(numel)
    for _ in range(3):
        dist.all_reduce(tensor)
    started, reps = time.perf_counter(), 20
    for _ in range(reps):
        dist.all_reduce(tensor)
    elapsed = (time.perf_counter() - started) / reps * 1e3
    if dist.get_rank() == 0:
        print(json.dumps({"ms": elapsed}))
    dist.destroy_process_group()
    return elapsed


def trainable_parameters(store: str) -> int:
    from embodied.datasets.store import EpisodeStore
    from embodied.policies import make_policy

    with EpisodeStore(store) as opened:
        policy = make_policy({"name": "bc"}, opened.features, opened.stats)
    return sum(p.numel() for p in policy.parameters() if p.requires_grad)


def rollout_rate(work: Path, workers: int, ranks: int, episodes: int) -> float:
    out = work / f"collect_{workers}w_{ranks}r.zarr"
    args = ["collect", "env=franka", "env.task=lift", "env.obs_mode=state", f"episodes={episodes}",
            f"out={out}", f"num_workers={workers}", f"run_dir={work / 'collect_runs'}"]  # fmt: skip
    launcher = [*torchrun(ranks), "-m", "embodied.cli"] if ranks > 1 else CLI
    return episodes / run([*launcher, *args])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/embodied_distributed")
    parser.add_argument("--store", help="an 84 px lift store (default: collect 10 episodes)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--episodes", type=int, default=24, help="per rollout figure (wall, start-up in)")
    parser.add_argument("--allreduce", type=int, help=argparse.SUPPRESS)  # internal: one rank of the timing
    args = parser.parse_args()
    if args.allreduce:
        allreduce_ms(args.allreduce)
        return
    import shutil

    work = Path(args.work) / "runs"  # only what this script writes is removed
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    store = args.store
    if store is None:
        store = str(work / "lift84.zarr")
        run([*CLI, "collect", "env=franka", "env.task=lift", "episodes=10", f"out={store}", "num_workers=2",
             f"run_dir={work / 'collect_store'}"])  # fmt: skip

    one = train_rate(work, store, 1, args.steps, args.batch_size)
    two = train_rate(work, store, 2, args.steps, args.batch_size)
    numel = trainable_parameters(store)
    result = subprocess.run([*torchrun(2), __file__, "--allreduce", str(numel)], capture_output=True, text=True)
    comm_ms = json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])["ms"]
    step_ms = args.batch_size / two * 1e3
    print(f"\ntraining: policy=bc (cnn, 84 px), global batch {args.batch_size}, {numel:,} trainable parameters")
    print("| processes | samples/s | ratio to 1 process | step | all-reduce per step | communication share |")
    print("|---|---|---|---|---|---|")
    print(f"| 1 | {one:.0f} | 1.00 | {args.batch_size / one * 1e3:.0f} ms | - | - |")
    print(f"| 2 (gloo) | {two:.0f} | {two / one:.2f} | {step_ms:.0f} ms | {comm_ms:.1f} ms | {comm_ms / step_ms:.0%} |")

    rows = []
    for workers, ranks in ((1, 1), (2, 1), (4, 1), (1, 2), (2, 2)):
        rows.append((workers, ranks, rollout_rate(work, workers, ranks, args.episodes)))
    base = rows[0][2]
    print(f"\nrollouts: {args.episodes} state-only lift episodes (scripted expert) into a store, per configuration")
    print("| env workers per process | processes (torchrun ranks, a shard each) | episodes/s | ratio to 1 worker |")
    print("|---|---|---|---|")
    for workers, ranks, rate in rows:
        print(f"| {workers} | {ranks} | {rate:.2f} | {rate / base:.2f} |")


if __name__ == "__main__":
    main()
