"""Our lean control loop reproduces robosuite's own stepping: same torques, same trajectories."""

from __future__ import annotations

import numpy as np
import pytest

from embodied.envs import ExpertConfig, make_env, make_expert


@pytest.mark.parametrize("task", ["lift", "pick_place_can"])
def test_fast_step_matches_robosuite(task):
    config = {"name": "franka", "task": task, "obs_mode": "state"}
    reference = make_env({**config, "fast_step": False})
    fast = make_env({**config, "fast_step": True})
    try:
        assert reference._fast_stepper is None and fast._fast_stepper is not None
        obs_ref, _ = reference.reset(seed=7)
        obs_fast, _ = fast.reset(seed=7)
        np.testing.assert_array_equal(reference.sim.sim.data.qpos, fast.sim.sim.data.qpos)
        # The expert's actions (with contacts: grasp, lift, carry), then random ones.
        expert = make_expert(reference, ExpertConfig(seed=7))
        expert.reset()
        rng = np.random.default_rng(0)
        for t in range(90):
            action = expert.act(obs_ref) if t < 70 else rng.uniform(-1, 1, 7).astype(np.float32)
            obs_ref, reward_ref, *_ = reference.step(action)
            obs_fast, reward_fast, *_ = fast.step(action)
            np.testing.assert_allclose(fast.sim.sim.data.qpos, reference.sim.sim.data.qpos, rtol=0, atol=1e-9)
            np.testing.assert_allclose(fast.sim.sim.data.qvel, reference.sim.sim.data.qvel, rtol=0, atol=1e-7)
            for key in ("proprio", "state"):
                np.testing.assert_allclose(obs_fast[key], obs_ref[key], rtol=0, atol=1e-6, err_msg=f"{key} at step {t}")
            assert reward_fast == reward_ref
    finally:
        reference.close()
        fast.close()
