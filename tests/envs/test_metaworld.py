"""The metaworld env with real Meta-World physics, its scripted policies and our headless renderer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embodied.cli import main
from embodied.envs import ExpertConfig, env_config, make_env, make_expert
from embodied.envs.metaworld.config import MetaWorldConfig
from embodied.envs.metaworld.tasks import INSTRUCTIONS, SUITES, TASKS


def test_task_tables_match_the_installed_metaworld():
    from embodied.envs.metaworld._metaworld import import_metaworld

    import_metaworld()  # chooses MuJoCo's GL backend before mujoco is first imported
    from metaworld import env_dict

    assert TASKS == list(env_dict.ALL_V3_ENVIRONMENTS) == list(env_dict.MT50_V3)
    assert SUITES["mt10"] == list(env_dict.MT10_V3) and SUITES["mt50"] == list(env_dict.MT50_V3)
    assert all(INSTRUCTIONS[t] and INSTRUCTIONS[t] == INSTRUCTIONS[t].strip().lower() for t in TASKS)
    assert len(set(INSTRUCTIONS.values())) == len(TASKS)  # one instruction per task, none shared


@pytest.mark.parametrize("task", SUITES["mt10"])
def test_every_mt10_task_resets_steps_and_renders(task):
    env = make_env(MetaWorldConfig(task=task, image_size=32, max_episode_steps=5))
    try:
        obs, info = env.reset(seed=1)
        assert env.observation_space.contains(obs) and info == {"is_success": False}
        assert obs["images/corner"].shape == (32, 32, 3) and obs["images/corner"].std() > 10
        assert obs["state"].shape == (39,) and obs["proprio"].shape == (4,)
        assert obs["language_instruction"] == INSTRUCTIONS[task]
        for _ in range(5):
            after, reward, terminated, truncated, info = env.step(np.array([0, 0, 1, 1], np.float32))
        assert after["proprio"][2] > obs["proprio"][2] + 0.005  # the hand rose: real physics
        assert after["proprio"][3] < obs["proprio"][3]  # the fingers closed
        assert truncated and not terminated and isinstance(reward, float)
        assert np.abs(after["images/corner"].astype(int) - obs["images/corner"].astype(int)).mean() > 0.1
        assert env.render().shape == (256, 256, 3)
    finally:
        env.close()


def test_seeds_fix_the_scene_and_differ_from_each_other():
    env = make_env(MetaWorldConfig(task="push-v3", obs_mode="state"))
    try:
        first, _ = env.reset(seed=3)
        again, _ = env.reset(seed=3)
        other, _ = env.reset(seed=1_000_000_003)  # an evaluation seed
        np.testing.assert_array_equal(first["state"], again["state"])
        assert not np.allclose(first["state"][4:7], other["state"][4:7])  # the puck moved
        assert not np.allclose(first["state"][-3:], other["state"][-3:])  # and the goal
    finally:
        env.close()


def test_corner_views_are_turned_upright():
    raw = make_env(MetaWorldConfig(task="reach-v3", image_size=32, upright=False))
    upright = make_env(MetaWorldConfig(task="reach-v3", image_size=32))
    try:
        a, _ = raw.reset(seed=0)
        b, _ = upright.reset(seed=0)
        np.testing.assert_array_equal(b["images/corner"], a["images/corner"][::-1, ::-1])
    finally:
        raw.close()
        upright.close()


@pytest.mark.parametrize("task", ["reach-v3", "drawer-close-v3"])
def test_scripted_expert_succeeds(task):
    env = make_env(MetaWorldConfig(task=task, obs_mode="state", max_episode_steps=150))
    try:
        for seed in range(3):
            obs, _ = env.reset(seed=seed)
            expert = make_expert(env, ExpertConfig(noise=0.1, seed=seed))
            expert.reset()
            done = False
            while not done:
                obs, _, terminated, truncated, info = env.step(expert.act(obs))
                done = terminated or truncated
            assert terminated and info["is_success"], f"{task} seed {seed}"
    finally:
        env.close()


def test_bad_config_values_are_refused():
    with pytest.raises(ValueError, match="not a Meta-World v3 task"):
        env_config({"name": "metaworld", "task": "reach-v2"})
    from embodied.configs.checks import ConfigValueError, check_config

    with pytest.raises(ConfigValueError, match="suite"):
        check_config(env_config({"name": "metaworld", "suite": "mt11"}))
    with pytest.raises(ValueError, match="an env runs one"):
        make_env({"name": "metaworld", "suite": "mt10"})
    with pytest.raises(ValueError, match="camera 'nope'"):
        make_env({"name": "metaworld", "cameras": ["nope"]})


SUITE = "reach-v3+drawer-close-v3"


@pytest.fixture(scope="module")
def suite_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("mw") / "suite.zarr"
    args = ["collect", "env=metaworld", f"env.suite={SUITE}", "env.image_size=32", "env.max_episode_steps=150",
            "episodes=2", "num_workers=0", f"out={out}"]  # fmt: skip
    assert main(args) == 0
    return out


def test_suite_collection_writes_each_task_into_one_store_and_resumes(suite_store, capsys):
    from embodied.datasets.store import EpisodeStore

    with EpisodeStore(suite_store) as store:
        info = store.episode_info()
        assert sorted(info["task"]) == ["drawer-close-v3"] * 2 + ["reach-v3"] * 2 and all(info["success"])
        assert store.metadata["env_config"]["suite"] == SUITE
        assert store.metadata["suite"] == ["reach-v3", "drawer-close-v3"]
        assert {c["task"] for c in info["env_config"]} == {"reach-v3", "drawer-close-v3"}
        assert store.features["action"].shape == (4,) and store.features["images/corner"].shape == (32, 32, 3)
    capsys.readouterr()
    args = ["collect", "env=metaworld", f"env.suite={SUITE}", "env.image_size=32", "env.max_episode_steps=150",
            "episodes=2", "num_workers=0", f"out={suite_store}"]  # fmt: skip
    assert main(args) == 0
    assert capsys.readouterr().out.count("nothing to collect") == 2


def test_per_task_stores(tmp_path):
    from embodied.datasets.store import EpisodeStore

    args = ["collect", "env=metaworld", f"env.suite={SUITE}", "env.obs_mode=state", "env.max_episode_steps=150",
            "episodes=1", "num_workers=0", "per_task_stores=true", f"out={tmp_path / 'stores'}"]  # fmt: skip
    assert main(args) == 0
    for task in ("reach-v3", "drawer-close-v3"):
        with EpisodeStore(tmp_path / "stores" / f"{task}.zarr") as store:
            assert store.episode_info()["task"] == [task]


def test_policy_trains_on_the_suite_store_and_evaluates_per_task(suite_store, tmp_path):
    run = tmp_path / "train"
    args = ["train", "policy=bc", "policy.encoder.name=cnn", "policy.encoder.dim=16", "env=metaworld",
            f"env.suite={SUITE}", "env.image_size=32", f"dataset={suite_store}", "steps=3", "batch_size=4",
            f"run_dir={run}", "progress=false"]  # fmt: skip
    assert main(args) == 0
    args = ["eval", f"checkpoint={run / 'checkpoints' / 'last'}", "episodes=1", "max_episode_steps=8", "videos=1",
            f"run_dir={tmp_path / 'eval'}", "progress=false", "num_envs=1"]  # fmt: skip
    assert main(args) == 0
    result = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert list(result["per_task"]) == ["reach-v3", "drawer-close-v3"] and result["episodes"] == 2
    assert [e["task"] for e in result["per_episode"]] == ["reach-v3", "drawer-close-v3"]
    assert all(e["length"] <= 8 for e in result["per_episode"])
    rates = [r["success_rate"] for r in result["per_task"].values()]
    assert result["suite_mean"] == pytest.approx(sum(rates) / 2)
    assert (tmp_path / "eval" / "reach-v3" / "results.json").exists()
    assert list((tmp_path / "eval" / "drawer-close-v3" / "videos").glob("*.mp4"))
