"""The franka env with real robosuite physics and real headless rendering."""

from __future__ import annotations

import numpy as np
import pytest

from embodied.envs import ENVS, ExpertConfig, env_config, make_env, make_expert, make_vector_env
from embodied.envs.franka.tasks import TASKS


@pytest.fixture(scope="module")
def state_env():
    env = make_env({"name": "franka", "task": "lift", "obs_mode": "state"})
    yield env
    env.close()


def test_image_observation_schema():
    env = make_env({"name": "franka", "task": "lift", "cameras": ["agentview", "robot0_eye_in_hand"], "image_size": 48})
    try:
        obs, info = env.reset(seed=0)
        assert set(obs) == {"images/agentview", "images/robot0_eye_in_hand", "proprio", "state", "language_instruction"}
        for camera in ("agentview", "robot0_eye_in_hand"):
            image = obs[f"images/{camera}"]
            assert image.shape == (48, 48, 3) and image.dtype == np.uint8
            assert image.std() > 10, f"{camera} image is nearly uniform: nothing rendered"
        assert obs["proprio"].shape == (9,) and obs["proprio"].dtype == np.float32
        assert obs["language_instruction"] == "lift the red cube"
        assert env.observation_space.contains(obs)
        assert info == {"is_success": False}
        obs2, reward, terminated, truncated, info = env.step(np.zeros(7, np.float32))
        assert env.observation_space.contains(obs2)
        assert isinstance(reward, float) and not terminated and not truncated and info["is_success"] is False
        # The views change when the arm moves down towards the table.
        before = obs2["images/agentview"].astype(int)
        for _ in range(5):
            obs2, *_ = env.step(np.array([0, 0, -1, 0, 0, 0, -1], np.float32))
        assert np.abs(obs2["images/agentview"].astype(int) - before).mean() > 0.5
        frame = env.render()
        assert frame.shape == (256, 256, 3)
        features = {f.key: f for f in env.features}
        assert features["images/agentview"].shape == (48, 48, 3)
        assert features["action"].shape == (7,)
    finally:
        env.close()


def test_state_mode_renders_nothing(state_env):
    obs, _ = state_env.reset(seed=0)
    assert not any(key.startswith("images/") for key in obs)
    assert state_env.observation_space.contains(obs)


def test_seeding_fixes_the_scene(state_env):
    first, _ = state_env.reset(seed=3)
    again, _ = state_env.reset(seed=3)
    other, _ = state_env.reset(seed=4)
    np.testing.assert_array_equal(first["state"], again["state"])
    assert not np.allclose(first["state"][:3], other["state"][:3])


def test_action_is_checked(state_env):
    state_env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        state_env.step(np.zeros(6))
    with pytest.raises(ValueError, match="NaN"):
        state_env.step(np.full(7, np.nan))


def test_time_limit_truncates():
    env = make_env({"name": "franka", "task": "lift", "obs_mode": "state", "max_episode_steps": 3})
    try:
        env.reset(seed=0)
        flags = [env.step(np.zeros(7))[2:4] for _ in range(3)]
        assert flags == [(False, False), (False, False), (False, True)]
    finally:
        env.close()


@pytest.mark.parametrize("task", sorted(TASKS))
def test_expert_succeeds(task):
    env = make_env({"name": "franka", "task": task, "obs_mode": "state"})
    try:
        for seed in (0, 1):
            obs, _ = env.reset(seed=seed)
            expert = make_expert(env, ExpertConfig(seed=seed))
            expert.reset()
            terminated = truncated = False
            while not (terminated or truncated):
                obs, reward, terminated, truncated, info = env.step(expert.act(obs))
            assert info["is_success"] and terminated, f"{task} expert failed on seed {seed}"
            assert reward > 0
    finally:
        env.close()


def test_config_errors_name_the_problem():
    with pytest.raises(Exception, match="no_such_field"):
        env_config({"name": "franka", "no_such_field": 1})
    with pytest.raises(KeyError, match="unknown env 'nope'"):
        make_env({"name": "nope"})
    with pytest.raises(ValueError, match="env.task='juggle': must be one of lift, lift_zone, pick_place_can, stack"):
        make_env({"name": "franka", "task": "juggle", "obs_mode": "state"})
    with pytest.raises(ValueError, match="camera 'ceiling' not in task"):
        make_env({"name": "franka", "cameras": ["ceiling"]})
    assert "franka" in ENVS.names()


def test_vector_env_in_subprocesses():
    envs = make_vector_env({"name": "franka", "task": "lift", "obs_mode": "state"}, num_envs=2)
    try:
        obs, info = envs.reset(seed=[10, 11])
        assert obs["proprio"].shape == (2, 9)
        assert not np.allclose(obs["state"][0], obs["state"][1])
        obs, reward, terminated, truncated, info = envs.step(np.zeros((2, 7), np.float32))
        assert reward.shape == (2,) and obs["state"].shape[0] == 2
    finally:
        envs.close()
