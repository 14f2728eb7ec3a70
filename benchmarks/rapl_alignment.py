"""RAPL's policy experiment in miniature: a Diffusion Policy trained on demos that ignore a hidden preference, aligned
with RAPL's reward, RLHF's reward and the true cost, at two numbers of preference queries.

    python benchmarks/rapl_alignment.py [--work outputs/benchmarks/rapl_alignment] [--demos 60] [--queries 50 150]
        [--train-steps 3000] [--rounds 3] [--episodes-per-round 16] [--steps-per-round 100] [--eval-episodes 30]
        [--methods dpo] [--rewards rapl rlhf true_cost]

Stages (each skipped when its output exists, so a rerun continues):

1. ``--demos`` lift_zone episodes whose expert style is drawn per episode in [-1, 1] (the demos ignore the
   preference: some go straight to the cube, some detour over the blue zone), 64 px agentview + state; and 5 demos
   at the preferred style, which RAPL's reward matches against.
2. ``policy=diffusion_small`` trained state-only on the first store (the pretrained policy; its rollouts mix both
   behaviours).
3. A simulated person (noise 0.5) answers the largest ``--queries`` triplets over that store; RAPL (frozen
   ResNet-18 + Linear->32, OT to the 5 demos) and RLHF (same encoder, per-frame head) rewards are learned from the
   first N answers for each N.
4. `embodied align` with each reward (and the true cost, the oracle), ``--rounds`` rounds each; before and after on
   the same ``--eval-episodes`` unseen scenes: task success and the rate of satisfying the preference (hidden cost
   <= 1), with 95% Wilson intervals, and the wall time per round.

Prints a markdown table and writes ``<work>/rapl_alignment.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def collect_stores(work: Path, demos: int):
    from embodied.envs.franka.config import FrankaConfig
    from embodied.evaluation.collection import CollectConfig, collect

    env = FrankaConfig(task="lift_zone", image_size=64)
    mixed, preferred = work / "mixed.zarr", work / "preferred.zarr"
    collect(CollectConfig(env=env, episodes=demos, out=str(mixed), expert_random_style=True), work)
    collect(CollectConfig(env=env, episodes=5, out=str(preferred), seed=50_000), work)
    return env, mixed, preferred


def train_policy(work: Path, env, store: Path, steps: int) -> Path:
    from embodied.policies.diffusion import DiffusionConfig
    from embodied.training.fit_policy import TrainConfig, train
    from embodied.training.optim import OptimConfig

    run = work / "policy"
    if (run / "checkpoints" / "last" / "checksums.json").exists():
        return run / "checkpoints" / "last"
    policy = DiffusionConfig(obs_keys=["proprio", "state"], down_dims=[32, 64, 128], step_embed_dim=64)
    job = TrainConfig(env=env, policy=policy, dataset=str(store), steps=steps, batch_size=64, run_dir=str(run),
                      optim=OptimConfig(lr=1e-3), resume=(run / "checkpoints" / "last").exists())  # fmt: skip
    started = time.perf_counter()
    out = train(job, run)
    print(f"policy trained in {(time.perf_counter() - started) / 60:.1f} min", flush=True)
    return out


def learn_rewards(work: Path, store: Path, preferred: Path, queries: list[int], methods: list[str]) -> dict:
    from embodied.datasets.preferences import read_preferences
    from embodied.rewards.align import AlignConfig, align
    from embodied.rewards.person import PersonConfig, SimulateConfig, simulate_preferences

    have = len(read_preferences(store)) if (store / "preferences").exists() else 0
    if have < max(queries):
        simulate_preferences(SimulateConfig(dataset=str(store), queries=max(queries) - have,
                                            person=PersonConfig(noise=0.5)))  # fmt: skip
    out = {}
    for method in methods:
        for n in queries:
            run = work / "rewards" / f"{method}_{n}"
            if not (run / "reward" / "checksums.json").exists():
                job = AlignConfig(dataset=str(store), demos=str(preferred), demo_episodes=5, queries=n,
                                  run_dir=str(run), resume=(run / "checkpoints" / "last").exists())  # fmt: skip
                job.reward.method = method
                align(job, run)
            out[f"{method}_{n}"] = run / "reward"
    return out


def run_alignment(work: Path, checkpoint: Path, reward: str, name: str, method: str, args) -> dict:
    from embodied.alignment.config import PolicyAlignConfig
    from embodied.alignment.loop import align_policy

    run = work / "align" / f"{name}_{method}"
    report = run / "report.json"
    if not report.exists():
        job = PolicyAlignConfig(checkpoint=str(checkpoint), reward=reward, method=method, rounds=args.rounds,
                                episodes_per_round=args.episodes_per_round, steps_per_round=args.steps_per_round,
                                eval_episodes=args.eval_episodes, run_dir=str(run),
                                resume=(run / "alignment.json").exists())  # fmt: skip
        started = time.perf_counter()
        align_policy(job, run)
        (run / "wall.json").write_text(json.dumps({"seconds": time.perf_counter() - started}))
    result = json.loads(report.read_text())
    result["seconds"] = json.loads((run / "wall.json").read_text())["seconds"] if (run / "wall.json").exists() else None
    return result


def cell(metrics: dict, key: str) -> str:
    low, high = metrics[key.replace("_rate", "_ci95")]
    return f"{metrics[key]:.2f} ({low:.2f}-{high:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="outputs/benchmarks/rapl_alignment")
    parser.add_argument("--demos", type=int, default=60)
    parser.add_argument("--queries", type=int, nargs="+", default=[50, 150])
    parser.add_argument("--train-steps", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--episodes-per-round", type=int, default=16)
    parser.add_argument("--steps-per-round", type=int, default=100)
    parser.add_argument("--eval-episodes", type=int, default=30)
    parser.add_argument("--methods", nargs="+", default=["dpo"])
    parser.add_argument("--rewards", nargs="+", default=["rapl", "rlhf", "true_cost"])
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    env, mixed, preferred = collect_stores(work, args.demos)
    checkpoint = train_policy(work, env, mixed, args.train_steps)
    learned = [r for r in args.rewards if r != "true_cost"]
    rewards = {k: str(v) for k, v in learn_rewards(work, mixed, preferred, args.queries, learned).items()}
    if "true_cost" in args.rewards:
        rewards["true_cost"] = "true_cost"
    rows, results = [], {}
    for name, reward in rewards.items():
        for method in args.methods:
            result = run_alignment(work, checkpoint, reward, name, method, args)
            results[f"{name}/{method}"] = result
            per_round = sum(r["seconds"] for r in result["rounds"]) / len(result["rounds"])
            before, after = result["before"], result["after"]
            rows.append(f"| {name} | {method} | {cell(before, 'success_rate')} | {cell(after, 'success_rate')} | "
                        f"{cell(before, 'preference_rate')} | {cell(after, 'preference_rate')} | "
                        f"{before['mean_true_cost']:.2f} -> {after['mean_true_cost']:.2f} | {per_round:.0f} s |"
            )  # fmt: skip
    print("| reward | method | success before | success after | preference before | preference after | hidden cost | "
          "wall per round |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    (work / "rapl_alignment.json").write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
