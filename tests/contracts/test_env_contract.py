"""Contract of every registered env (its config's ``tiny()`` preset): real physics resets and steps, observations
match the declared features, a store accepts them, and the env's registered expert acts in it."""

from __future__ import annotations

import numpy as np
import pytest

from embodied.datasets.store import EpisodeStore
from embodied.envs import ENVS, EXPERTS, ExpertConfig, make_env, make_expert
from embodied.envs.base import Env
from embodied.features import INSTRUCTION


@pytest.mark.parametrize("name", ENVS.names())
def test_env_resets_steps_and_describes_what_a_store_accepts(name, tmp_path):
    env = make_env(ENVS.config_class(name).tiny())
    try:
        assert isinstance(env, Env)
        features = {f.key: f for f in env.features}
        observed = {k for k, f in features.items() if f.kind != "action"}
        obs, info = env.reset(seed=3)
        assert set(obs) == observed | {INSTRUCTION} and isinstance(obs[INSTRUCTION], str)
        for key in observed:
            assert obs[key].shape == features[key].shape and obs[key].dtype == np.dtype(features[key].dtype), key
        again, _ = env.reset(seed=3)
        for key in observed:
            np.testing.assert_array_equal(again[key], obs[key])  # reset(seed) fixes the scene
        assert name in EXPERTS
        expert = make_expert(env, ExpertConfig(seed=3))
        expert.reset()
        steps = {key: [] for key in observed}
        steps["action"], steps["reward"] = [], []
        for _ in range(5):
            action = expert.act(obs)
            for key in observed:
                steps[key].append(obs[key])
            steps["action"].append(action)
            obs, reward, terminated, truncated, info = env.step(action)
            steps["reward"].append(reward)
            assert "is_success" in info and np.all(np.isfinite(obs["proprio"]))
        assert not np.allclose(steps["proprio"][0], obs["proprio"])  # the arm moved: real physics
        metadata = env.metadata_for_store
        assert metadata["env_config"]["name"] == name
        with EpisodeStore.create(tmp_path / "s.zarr", env.features, metadata) as store:
            store.append_episode({k: np.stack(v) for k, v in steps.items()}, language_instruction=again[INSTRUCTION],
                                 terminated=False, success=False, seed=3, task=name)  # fmt: skip
        assert EpisodeStore(tmp_path / "s.zarr").n_episodes == 1
    finally:
        env.close()
