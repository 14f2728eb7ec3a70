"""The hidden preference: lift_zone's cost follows the expert's style, is recorded in stores, and the simulated
person ranks by it."""

from __future__ import annotations

import numpy as np
import pytest

from embodied.datasets.preferences import read_preferences
from embodied.datasets.store import EpisodeStore
from embodied.envs import ExpertConfig, make_env, make_expert
from embodied.envs.franka.config import FrankaConfig
from embodied.features import PREFERENCE_COST
from embodied.rewards.person import PersonConfig, SimulateConfig, SimulatedPerson, episode_costs, simulate_preferences


def _episode(style: float, seed: int = 3, config=None):
    env = make_env(config or FrankaConfig(task="lift_zone", image_size=32))
    try:
        obs, _ = env.reset(seed=seed)
        expert = make_expert(env, ExpertConfig(seed=seed, style=style))
        expert.reset()
        costs, success, done = [obs[PREFERENCE_COST]], False, False
        while not done:
            obs, _, terminated, truncated, info = env.step(expert.act(obs))
            costs.append(obs[PREFERENCE_COST])
            success |= info["is_success"]
            done = terminated or truncated
        assert env.observation_space[PREFERENCE_COST].contains(np.asarray(obs[PREFERENCE_COST]).reshape(()))
        return np.array(costs), success
    finally:
        env.close()


def test_the_expert_style_grades_the_hidden_cost_and_the_task_still_succeeds():
    results = {style: _episode(style) for style in (1.0, 0.0, -1.0)}
    totals = {style: costs.sum() for style, (costs, _) in results.items()}
    assert all(success for _, success in results.values())
    assert totals[1.0] < totals[0.0] < totals[-1.0]
    assert results[-1.0][0].max() > 0.8  # the detour passes over the zone's centre


def test_metaworld_tasks_take_the_same_hidden_preference():
    from embodied.envs.metaworld.config import MetaWorldConfig

    config = MetaWorldConfig(task="drawer-open-v3", obs_mode="state", preference="avoid_zone")
    results = {style: _episode(style, seed=1, config=config) for style in (1.0, -1.0)}
    assert all(success for _, success in results.values())
    assert results[1.0][0].sum() < 1.0 < 5.0 < results[-1.0][0].sum()
    from embodied.configs.checks import check_config

    with pytest.raises(ValueError, match="preference"):
        check_config(MetaWorldConfig(preference="be_nice"))


def test_stores_record_the_cost_and_the_person_ranks_by_it(zone_rollouts, tmp_path):
    import shutil

    path = tmp_path / "rollouts.zarr"
    shutil.copytree(zone_rollouts, path)
    with EpisodeStore(path) as store:
        assert store.features[PREFERENCE_COST].kind == "reward"
        costs = episode_costs(store)
    assert costs.std() > 1.0  # the random styles span the preference
    added, total = simulate_preferences(SimulateConfig(dataset=str(path), queries=30,
                                                       person=PersonConfig(equal_tolerance=0.0)))  # fmt: skip
    assert added == total == 30
    prefs = read_preferences(path)
    for episodes, ranks in zip(prefs.episodes, prefs.ranking):
        order = np.argsort(costs[episodes])
        assert list(ranks[order]) == sorted(ranks)  # cheaper episodes never rank worse
    noisy = SimulatedPerson(PersonConfig(noise=100.0, seed=1), costs)
    flips = sum(list(noisy.rank([a, b])) != list(SimulatedPerson(PersonConfig(), costs).rank([a, b]))
                for a, b in zip(range(0, 12), range(12, 24)))  # fmt: skip
    assert flips > 0  # noise flips some answers
