"""Meta-World: render speed, scripted-expert success per MT10 task, and policies trained on MT10 demos.

    python benchmarks/metaworld.py render [--steps 300] [--sizes 84 128]
    python benchmarks/metaworld.py experts [--seeds 20] [--suite mt10]
    python benchmarks/metaworld.py policies --store mt10.zarr [--policies bc diffusion_small openvla_small:...]
        [--steps 2000] [--episodes 20] [--max-steps 150]

``render``: env steps/s of reach-v3 with one ``corner`` camera, ours (embodied.envs.render: no shadows, MSAA or
reflections, buffer sized to the image) vs Meta-World's own path (``gymnasium.make("Meta-World/MT1",
render_mode="rgb_array")`` + ``render()``), one process, same actions. ``experts``: Meta-World's scripted policies
through our env, noise 0.1 (as collected) and 0, in two env processes. ``policies``: each entry is a configs/policy/
name with optional ``:``-separated overrides; every policy trains with the same steps and batch on the suite store
as `embodied train env=metaworld env.suite=mt10` does, then runs ``--episodes`` unseen scenes per task.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

# run as a script, this file's folder comes first on sys.path, where its own name would shadow the metaworld package
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def render(args) -> None:
    import gymnasium as gym

    from embodied.envs import make_env
    from embodied.envs.metaworld._metaworld import import_metaworld

    import_metaworld()
    actions = np.random.default_rng(0).uniform(-1, 1, (args.steps, 4)).astype(np.float32)
    rows = []

    def timed(reset, step) -> float:
        reset()
        start = time.perf_counter()
        for a in actions:
            step(a)
        return args.steps / (time.perf_counter() - start)

    state = make_env({"name": "metaworld", "task": "reach-v3", "obs_mode": "state", "max_episode_steps": 500})
    rows.append(("no camera", "ours", timed(lambda: state.reset(seed=0), state.step)))
    state.close()
    for size in args.sizes:
        ours = make_env({"name": "metaworld", "task": "reach-v3", "image_size": size, "max_episode_steps": 500})
        rows.append((f"corner {size} px", "ours", timed(lambda env=ours: env.reset(seed=0), ours.step)))
        ours.close()
        own = gym.make("Meta-World/MT1", env_name="reach-v3", render_mode="rgb_array", camera_name="corner",
                       width=size, height=size, max_episode_steps=500)  # fmt: skip

        def own_step(a, env=own):
            env.step(a)
            env.render()

        rows.append((f"corner {size} px", "Meta-World", timed(lambda env=own: env.reset(seed=0), own_step)))
        own.close()
    print(f"\nMeta-World reach-v3, {args.steps} steps of random actions, one process")
    print("| observation | renderer | steps/s | ours / Meta-World |")
    print("|---|---|---|---|")
    for i, (obs, who, rate) in enumerate(rows):
        ratio = f"{rate / rows[i + 1][2]:.1f}x" if who == "ours" and i + 1 < len(rows) and rows[i + 1][0] == obs else ""
        print(f"| {obs} | {who} | {rate:.0f} | {ratio} |")


def experts(args) -> None:
    from functools import partial

    from embodied.envs.metaworld.config import MetaWorldConfig
    from embodied.envs.metaworld.tasks import SUITES
    from embodied.evaluation.rollout import ExpertDriven, rollout_in_workers

    print("\n| task | success, noise 0.1 | success, noise 0 | mean length | wall s |")
    print("|---|---|---|---|---|")
    totals = []
    for task in SUITES[args.suite]:
        start = time.perf_counter()
        rates, lengths = [], []
        for noise in (0.1, 0.0):
            results = []
            config = MetaWorldConfig(task=task, obs_mode="state", max_episode_steps=args.max_steps)
            rollout_in_workers(config, iter(range(args.seeds)), results.append, workers=2,
                               wrappers=[partial(ExpertDriven, noise=noise)])  # fmt: skip
            rates.append(sum(r.success for r in results) / len(results))
            lengths += [r.length for r in results if r.success]
        totals.append(rates)
        print(f"| {task} | {rates[0]:.2f} | {rates[1]:.2f} | {np.mean(lengths):.0f} | "
              f"{time.perf_counter() - start:.0f} |", flush=True)  # fmt: skip
    mean = np.mean(totals, axis=0)
    print(f"| **mean** | {mean[0]:.3f} | {mean[1]:.3f} | | |")


def policies(args) -> None:
    from embodied.evaluation.evaluate import eval_env_config, evaluate
    from embodied.jobs.config import job_config
    from embodied.policies import load_policy
    from embodied.training.fit_policy import train

    results = {}
    for entry in args.policies:
        name, *extra = entry.split(":")
        run_dir = Path(args.out) / entry.replace(":", "_").replace("=", "-")
        store = Path(args.store).resolve()
        overrides = [f"policy={name}", "env=metaworld", f"env.suite={args.suite}", f"dataset={store}",
                     f"env.max_episode_steps={args.max_steps}", f"steps={args.steps}", f"batch_size={args.batch_size}",
                     f"checkpoint_every={args.steps}", "progress=false", *extra]  # fmt: skip
        job = job_config("train", overrides)
        start = time.perf_counter()
        final = train(job, run_dir)
        train_s = time.perf_counter() - start
        policy = load_policy(final)
        result = evaluate(policy, eval_env_config(job.env, policy), args.episodes, out_dir=run_dir / "eval",
                          videos=1, progress=False)  # fmt: skip
        results[entry] = {"train_s": train_s, **{k: result[k] for k in ("suite_mean", "per_task")}}
        (Path(args.out) / "metaworld.json").write_text(json.dumps(results, indent=1))
        print(f"{entry}: suite mean {result['suite_mean']:.3f}, trained {train_s / 60:.1f} min", flush=True)
    tasks = list(next(iter(results.values()))["per_task"])
    print(f"\nMeta-World {args.suite}: {args.steps} steps x batch {args.batch_size} each, CPU; {args.episodes} unseen "
          f"scenes per task, {args.max_steps}-step limit")  # fmt: skip
    print("| policy | train min | " + " | ".join(t.removesuffix("-v3") for t in tasks) + " | mean |")
    print("|---|---|" + "---|" * (len(tasks) + 1))
    for entry, record in results.items():
        cells = [f"{record['per_task'][t]['success_rate']:.2f}" for t in tasks]
        print(f"| {entry} | {record['train_s'] / 60:.1f} | " + " | ".join(cells) + f" | {record['suite_mean']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("render")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--sizes", type=int, nargs="+", default=[84, 128])
    p = sub.add_parser("experts")
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--suite", default="mt10")
    p.add_argument("--max-steps", type=int, default=200)
    p = sub.add_parser("policies")
    p.add_argument("--store", required=True)
    p.add_argument("--suite", default="mt10")
    p.add_argument("--policies", nargs="+", default=["bc", "diffusion_small"])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--max-steps", type=int, default=150)
    p.add_argument("--out", default="outputs/benchmarks/metaworld")
    args = parser.parse_args()
    {"render": render, "experts": experts, "policies": policies}[args.what](args)


if __name__ == "__main__":
    main()
