"""Env steps per second: raw robosuite vs our franka env, state-only and with one camera, and the physics limit.

    python benchmarks/env_throughput.py [--steps 300] [--rounds 3] [--task lift] [--size 84]

Single-env configurations are measured in interleaved rounds (median reported), so slow drifts of a shared
machine hit them alike; ratios are against raw robosuite without cameras. Run it alone: on 2 cores anything
running beside it distorts the figures.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def rate(step, steps: int, warmup: int = 10) -> float:
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--task", default="lift")
    parser.add_argument("--size", type=int, default=84)
    args = parser.parse_args()

    from embodied.envs import make_env, make_vector_env
    from embodied.envs.franka._robosuite import import_robosuite
    from embodied.envs.franka.env import controller_config
    from embodied.envs.franka.tasks import get_task

    suite = import_robosuite()
    import mujoco

    task = get_task(args.task)
    actions = np.random.default_rng(0).uniform(-0.3, 0.3, (1000, 7))
    counter = iter(range(10**9))

    def action():
        return actions[next(counter) % len(actions)]

    common = dict(robots="Panda", controller_configs=controller_config(), has_renderer=False, control_freq=20,
                  horizon=10**6, ignore_done=True, hard_reset=False, reward_shaping=False)  # fmt: skip
    camera = dict(camera_names=["agentview"], camera_heights=args.size, camera_widths=args.size)
    raw = suite.make(task.robosuite_env, has_offscreen_renderer=False, use_camera_obs=False, **common)
    raw_cam = suite.make(task.robosuite_env, has_offscreen_renderer=True, use_camera_obs=True, **camera, **common)
    base = {"name": "franka", "task": args.task, "image_size": args.size}
    ours = make_env({**base, "obs_mode": "state"})
    ours_cam = make_env(base)
    ours_robosuite_step = make_env({**base, "fast_step": False})
    ours_state_robosuite_step = make_env({**base, "obs_mode": "state", "fast_step": False})
    for env in (raw, raw_cam):
        env.reset()
    for env in (ours, ours_cam, ours_robosuite_step, ours_state_robosuite_step):
        env.reset(seed=0)

    single = {
        "raw robosuite, no camera": (lambda: raw.step(action()), args.steps),
        f"raw robosuite, 1 camera {args.size} px (its defaults)": (lambda: raw_cam.step(action()), args.steps // 4),
        "embodied franka, state-only": (lambda: ours.step(action()), args.steps),
        "embodied franka, state-only, fast_step=false": (
            lambda: ours_state_robosuite_step.step(action()),
            args.steps,
        ),
        f"embodied franka, 1 camera {args.size} px": (lambda: ours_cam.step(action()), args.steps),
        f"embodied franka, 1 camera {args.size} px, fast_step=false": (
            lambda: ours_robosuite_step.step(action()),
            args.steps,
        ),
    }
    samples: dict[str, list[float]] = {name: [] for name in single}
    for _ in range(args.rounds):
        for name, (step, steps) in single.items():
            samples[name].append(rate(step, steps))
    results = {name: statistics.median(values) for name, values in samples.items()}
    render_fps = rate(lambda: ours_cam._camera_renderer.render("agentview"), args.steps)
    substeps = int(round(raw.control_timestep / raw.model_timestep))
    model, data = raw.sim.model._model, raw.sim.data._data
    physics = rate(lambda: mujoco.mj_step(model, data), args.steps * 10) / substeps
    for env in (raw, raw_cam, ours, ours_cam, ours_robosuite_step, ours_state_robosuite_step):
        env.close()

    vector = make_vector_env(base, num_envs=2)
    vector.reset(seed=[0, 1])
    batch = np.zeros((2, 7), np.float32)
    results["embodied franka, 1 camera, 2 processes (sum)"] = 2 * rate(lambda: vector.step(batch), args.steps)
    vector.close()
    results[f"physics limit (mj_step x {substeps} substeps)"] = physics

    reference = results["raw robosuite, no camera"]
    print(f"\ntask={args.task}, {args.steps} steps x {args.rounds} rounds (median); "
          f"our {args.size} px camera render alone: {render_fps:.0f} frames/s\n")  # fmt: skip
    print(f"| {'configuration':<50} | {'env steps/s':>11} | {'vs raw robosuite':>16} |")
    print(f"|{'-' * 52}|{'-' * 13}|{'-' * 18}|")
    for name, value in results.items():
        print(f"| {name:<50} | {value:>11.1f} | {value / reference:>15.2f}x |")
    overhead = 1 - results["embodied franka, state-only, fast_step=false"] / reference
    speedup = results["embodied franka, state-only"] / reference
    print(f"\nwrapper overhead on state-only stepping through robosuite's step: {overhead:+.1%} (target < 10%);")
    print(f"with fast_step (default) state-only stepping runs {speedup:.2f}x raw robosuite")


if __name__ == "__main__":
    main()
