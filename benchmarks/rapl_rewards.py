"""RAPL's table in miniature: learned visual rewards vs the hidden preference, by number of preference queries.

    python benchmarks/rapl_rewards.py --rollouts data/lz_rollouts.zarr --demos data/lz_demos.zarr \\
        [--queries 25 50 100 150 300] [--seeds 0 1 2] [--train-episodes 200] [--steps 300] \\
        [--encoders resnet18 cnn resnet18:DIR_FROM_EMBODIED_PRETRAIN] [--out outputs/benchmarks/rapl]

The rollouts store comes from `embodied collect env=franka env.task=lift_zone expert_random_style=true`, the demos
from the same task at the expert's preferred style (the default). Its first ``--train-episodes`` episodes are the
pool training queries are drawn from (a simulated person with noise 0.5 answers them); the rest are held out: 200
noise-free held-out queries over them score preference accuracy, and their per-step learned rewards are compared to
the true reward (minus the per-step preference cost) by Spearman correlation, pooled over steps and over episode
returns. Methods: RAPL (frozen first encoder + Linear->32, OT to the demos), RLHF (same encoder + per-frame scalar
head), frozen OT for each ``--encoders`` entry (``name`` or ``name:pretrained_dir``), and the ground truth. Prints
mean +- std over seeds, the queries each method needs to reach RLHF's largest-query correlation, and the cost:
seconds per 1,000 episode reward evaluations (ours, batched, vs POT's ot.sinkhorn one episode at a time) and
alignment seconds. Results go to ``<out>/rapl_rewards.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def queries_for(costs, pool, n, seed, noise):
    """``n`` triplets over ``pool`` answered by a simulated person, as an in-memory preference table."""
    from embodied.datasets.preferences import Preferences
    from embodied.rewards.person import PersonConfig, SimulatedPerson, sample_queries

    rows = sample_queries(pool, n, 3, np.random.default_rng([seed, n]))
    person = SimulatedPerson(PersonConfig(noise=noise, equal_tolerance=0.5, seed=seed), costs)
    ranks = np.stack([person.rank(r) for r in rows]).astype(np.int8)
    return Preferences(rows, ranks, np.zeros(len(rows), np.int32), ["simulated"], np.zeros(len(rows)))


def parse_method(entry: str) -> tuple[str, dict]:
    """``rapl:features=tokens,temperature=1`` -> ("rapl", {"features": "tokens", "temperature": 1})."""
    import yaml

    method, _, rest = entry.partition(":")
    overrides = dict(item.split("=", 1) for item in rest.split(",") if item)
    return method, {k: yaml.safe_load(v) for k, v in overrides.items()}


def build(method, encoder, pretrained, image_shape, **overrides):
    """A VisualReward on a frozen encoder built with seed 0 (the same random-init weights for every method)."""
    import torch

    from embodied.rewards.config import RewardConfig
    from embodied.rewards.model import VisualReward

    torch.manual_seed(0)
    enc = {"name": encoder, "train": "frozen", **({"pretrained": pretrained} if pretrained else {})}
    return VisualReward(RewardConfig(method=method, encoder=enc, **overrides), image_shape)


def evaluate(model, bank, demo_features, held_out, held_prefs):
    from embodied.features import PREFERENCE_COST
    from embodied.rewards.queries import episode_rewards, preference_accuracy, reward_correlations

    model.eval()
    model.set_demos(demo_features)
    rewards = episode_rewards(model, bank, held_out)
    accuracy = preference_accuracy({e: float(r.sum()) for e, r in rewards.items()}, held_prefs)
    return {"accuracy": accuracy, **reward_correlations(rewards, bank, PREFERENCE_COST)}


def encoded(encoder, pretrained, store, demos_store, camera, episodes, n_demos, features="pooled"):
    """(bank of all episodes, demo features, image shape) encoded once with a frozen encoder."""
    from embodied.rewards.queries import EpisodeBank

    image_shape = store.features[camera].shape
    model = build("ot", encoder, pretrained, image_shape, features=features)
    bank = EpisodeBank(store, camera, model.config.frame_stride, episodes)
    bank.encode(model, progress=f"encode {encoder}")
    demo_bank = EpisodeBank(demos_store, camera, model.config.frame_stride, range(n_demos))
    demo_bank.encode(model)
    return bank, [demo_bank.items[e] for e in range(n_demos)], image_shape


def cost_benchmark(model, bank, demo_features, episodes) -> dict:
    """Seconds per 1,000 episode rewards: our batched log-domain Sinkhorn vs POT's, one episode and demo at a time."""
    import warnings

    import ot
    import torch

    warnings.filterwarnings("ignore", message="Sinkhorn did not converge")  # a fixed iteration count, as ours

    from embodied.rewards.ot import cosine_cost
    from embodied.rewards.queries import episode_rewards

    model.eval()
    model.set_demos(demo_features)
    episode_rewards(model, bank, episodes[:8])  # warm-up
    start = time.perf_counter()
    episode_rewards(model, bank, episodes)
    ours = (time.perf_counter() - start) / len(episodes) * 1000
    with torch.no_grad():
        demos = [model.embed(d) for d in demo_features]
        subset = episodes[:20]
        start = time.perf_counter()
        for e in subset:
            z = model.embed(bank.items[int(e)])
            for d in demos:
                cost = cosine_cost(z[None], d[None])[0].double().numpy()
                n, m = cost.shape
                plan = ot.sinkhorn(np.full(n, 1 / n), np.full(m, 1 / m), cost, model.config.epsilon,
                                   numItermax=model.config.sinkhorn_iterations, stopThr=0)  # fmt: skip
                (plan * cost).sum(1)
        pot = (time.perf_counter() - start) / len(subset) * 1000
    return {"ours_s_per_1000": ours, "pot_s_per_1000": pot, "speedup": pot / ours}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", required=True)
    parser.add_argument("--demos", required=True)
    parser.add_argument("--queries", type=int, nargs="+", default=[25, 50, 100, 150, 300])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-episodes", type=int, default=200)
    parser.add_argument("--demo-episodes", type=int, default=10)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--noise", type=float, default=0.5, help="the simulated person's noise on training answers")
    parser.add_argument("--encoders", nargs="+", default=["resnet18", "cnn"])
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["rapl", "rlhf"],
        help="learned methods on the first encoder, with reward.* overrides: rapl:temperature=1",
    )
    parser.add_argument("--skip-baselines", action="store_true", help="only the learned --methods")
    parser.add_argument("--out", default="outputs/benchmarks/rapl")
    args = parser.parse_args()

    import torch

    from embodied.datasets.store import EpisodeStore
    from embodied.rewards.align import AlignConfig, fit_reward, split_preferences
    from embodied.rewards.person import episode_costs

    torch.set_num_threads(max(1, torch.get_num_threads()))
    store, demos_store = EpisodeStore(args.rollouts), EpisodeStore(args.demos)
    camera = next(k for k, f in store.features.items() if f.kind == "image")
    costs = episode_costs(store)
    pool, held_out = np.arange(args.train_episodes), np.arange(args.train_episodes, store.n_episodes)
    held_prefs = queries_for(costs, held_out, 200, 12345, 0.0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"config": vars(args), "frozen_ot": {}, "learned": {}, "cost": {}}

    first, *_ = args.encoders
    name, _, pretrained = first.partition(":")
    banks = {}

    def bank_for(entry, features="pooled"):
        if (entry, features) not in banks:
            encoder, _, weights = entry.partition(":")
            banks[entry, features] = encoded(encoder, weights or None, store, demos_store, camera,
                                             np.arange(store.n_episodes), args.demo_episodes, features)  # fmt: skip
        return banks[entry, features]

    for entry in [] if args.skip_baselines else args.encoders:
        bank, demo_features, image_shape = bank_for(entry)
        encoder, _, weights = entry.partition(":")
        model = build("ot", encoder, weights or None, image_shape)
        results["frozen_ot"][entry] = evaluate(model, bank, demo_features, held_out, held_prefs)
        print(f"frozen OT {entry}: {results['frozen_ot'][entry]}", flush=True)
        if entry == first:
            results["cost"] = cost_benchmark(model, bank, demo_features, held_out)
            print(f"cost: {results['cost']}", flush=True)
    for label in args.methods:
        method, overrides = parse_method(label)
        bank, demo_features, image_shape = bank_for(first, overrides.get("features", "pooled"))
        for n in args.queries:
            for seed in args.seeds:
                prefs = queries_for(costs, pool, n, seed, args.noise)
                train_prefs, val_prefs = split_preferences(prefs, 0.2, seed)
                model = build(method, name, pretrained or None, image_shape, **overrides)
                torch.manual_seed(seed)
                for layer in model.head.modules():
                    if hasattr(layer, "reset_parameters"):
                        layer.reset_parameters()
                job = replace(AlignConfig(), steps=args.steps, eval_every=25, checkpoint_every=args.steps,
                              seed=seed, progress=False, dataset=args.rollouts)  # fmt: skip
                start = time.perf_counter()
                with tempfile.TemporaryDirectory() as run_dir:
                    fit_reward(job, model, bank, train_prefs, val_prefs, demo_features, [], {"queries": n}, run_dir)
                seconds = time.perf_counter() - start
                record = {**evaluate(model, bank, demo_features, held_out, held_prefs), "align_s": seconds}
                results["learned"].setdefault(label, {}).setdefault(str(n), []).append(record)
                print(f"{label} n={n} seed={seed}: {record}", flush=True)
                (out / "rapl_rewards.json").write_text(json.dumps(results, indent=1))
    (out / "rapl_rewards.json").write_text(json.dumps(results, indent=1))
    print(report(results))


def report(results: dict) -> str:
    """The markdown table."""

    def cell(records, key):
        values = np.array([r[key] for r in records], dtype=float)
        return f"{values.mean():.2f} ± {values.std():.2f}"

    lines = ["| method | queries | Spearman (per step) | Spearman (episode return) | held-out preference accuracy | "
             "align s |", "|---|---|---|---|---|---|"]  # fmt: skip
    for method, by_n in results["learned"].items():
        for n, records in by_n.items():
            lines.append(f"| {method} | {n} | {cell(records, 'spearman_step')} | {cell(records, 'spearman_episode')} | "
                         f"{cell(records, 'accuracy')} | {cell(records, 'align_s')} |")  # fmt: skip
    for entry, record in results["frozen_ot"].items():
        lines.append(f"| frozen OT ({entry}) | 0 | {record['spearman_step']:.2f} | {record['spearman_episode']:.2f} | "
                     f"{record['accuracy']:.2f} | - |")  # fmt: skip
    lines.append("| ground truth (-preference cost) | - | 1.00 | 1.00 | 1.00 | - |")
    rlhf = results["learned"].get("rlhf", {})
    if rlhf:
        top = max(rlhf, key=int)
        for key, what in (("spearman_step", "per-step Spearman"), ("spearman_episode", "episode-return Spearman"),
                          ("accuracy", "held-out accuracy")):  # fmt: skip
            target = np.mean([r[key] for r in rlhf[top]])
            reached = []
            for method, by_n in results["learned"].items():
                hits = [int(n) for n, rs in by_n.items() if np.mean([r[key] for r in rs]) >= target]
                reached.append(f"{method} {min(hits) if hits else 'not reached'}")
            lines.append(f"\nqueries to reach RLHF's {top}-query {what} ({target:.2f}): " + ", ".join(reached))
    cost = results.get("cost")
    if cost:
        lines.append(f"\nreward cost: {cost['ours_s_per_1000']:.2f} s per 1,000 episodes (ours, batched, against the "
                     f"demos) vs {cost['pot_s_per_1000']:.2f} s (POT ot.sinkhorn, one episode and demo at a time): "
                     f"{cost['speedup']:.1f}x")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    if "--report" in sys.argv:
        print(report(json.loads(Path(sys.argv[sys.argv.index("--report") + 1]).read_text())))
    else:
        main()
