"""Env steps per second: raw robosuite vs our franka env, state-only and with one camera, and the physics limit.

    python benchmarks/env_throughput.py [--steps 300] [--task lift] [--size 84]

Prints one table; ratios are against raw robosuite without cameras. Run it alone: on 2 cores anything
running beside it distorts the figures.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def rate(step, steps: int, warmup: int = 20) -> float:
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--task", default="lift")
    parser.add_argument("--size", type=int, default=84)
    args = parser.parse_args()

    from embodied.envs import make_env
    from embodied.envs.franka._robosuite import import_robosuite
    from embodied.envs.franka.env import controller_config
    from embodied.envs.franka.tasks import get_task

    suite = import_robosuite()
    import mujoco

    task = get_task(args.task)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-0.3, 0.3, (args.steps + 100, 7))
    counter = iter(range(10**9))

    def action():
        return actions[next(counter) % len(actions)]

    results = {}
    common = dict(robots="Panda", controller_configs=controller_config(), has_renderer=False, control_freq=20,
                  horizon=10**6, ignore_done=True, hard_reset=False, reward_shaping=False)  # fmt: skip

    raw = suite.make(task.robosuite_env, has_offscreen_renderer=False, use_camera_obs=False, **common)
    raw.reset()
    results["raw robosuite, no camera"] = rate(lambda: raw.step(action()), args.steps)
    substeps = int(round(raw.control_timestep / raw.model_timestep))
    model, data = raw.sim.model._model, raw.sim.data._data
    physics = rate(lambda: mujoco.mj_step(model, data), args.steps * 10) / substeps
    raw.close()

    camera = dict(camera_names=["agentview"], camera_heights=args.size, camera_widths=args.size)
    raw_cam = suite.make(task.robosuite_env, has_offscreen_renderer=True, use_camera_obs=True, **camera, **common)
    raw_cam.reset()
    results[f"raw robosuite, 1 camera {args.size} px (its defaults)"] = rate(
        lambda: raw_cam.step(action()), args.steps // 3
    )
    raw_cam.close()

    ours = make_env({"name": "franka", "task": args.task, "obs_mode": "state"})
    ours.reset(seed=0)
    results["embodied franka, state-only"] = rate(lambda: ours.step(action()), args.steps)
    ours.close()

    ours_cam = make_env({"name": "franka", "task": args.task, "obs_mode": "image", "image_size": args.size})
    ours_cam.reset(seed=0)
    results[f"embodied franka, 1 camera {args.size} px"] = rate(lambda: ours_cam.step(action()), args.steps)
    renderer = ours_cam._camera_renderer
    render_fps = rate(lambda: renderer.render("agentview"), args.steps)
    ours_cam.close()
    results[f"physics limit (mj_step x {substeps} substeps)"] = physics

    base = results["raw robosuite, no camera"]
    print(f"\ntask={args.task}, steps={args.steps}; our camera render alone: {render_fps:.0f} frames/s\n")
    print(f"| {'configuration':<46} | {'env steps/s':>11} | {'vs raw robosuite':>16} |")
    print(f"|{'-' * 48}|{'-' * 13}|{'-' * 18}|")
    for name, value in results.items():
        print(f"| {name:<46} | {value:>11.1f} | {value / base:>15.2f}x |")
    overhead = 1 - results["embodied franka, state-only"] / base
    print(f"\nwrapper overhead on state-only stepping: {overhead:+.1%} (target < 10%)")


if __name__ == "__main__":
    main()
