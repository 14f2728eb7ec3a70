"""franka_shifted: another look with the same physics; stage captions follow the expert on real episodes."""

from __future__ import annotations

import numpy as np
import pytest

from embodied.datasets.store import EpisodeStore
from embodied.envs import make_env
from embodied.envs.domains import DOMAINS
from embodied.envs.franka.config import FrankaConfig, ShiftedFrankaConfig
from embodied.evaluation.collection import CollectConfig, collect
from embodied.features import CAPTION


def test_every_domain_gives_the_same_states_for_the_same_actions_and_other_pixels():
    configs = [FrankaConfig(image_size=32)] + [ShiftedFrankaConfig(image_size=32, domain=d) for d in DOMAINS.names()]
    envs = [make_env(c) for c in configs]
    try:
        obs = [env.reset(seed=11)[0] for env in envs]
        actions = np.random.default_rng(0).uniform(-1, 1, (12, 7)).astype(np.float32)
        for action in actions:
            obs = [env.step(action)[0] for env in envs]
            for o in obs[1:]:
                np.testing.assert_array_equal(o["state"], obs[0]["state"])
                np.testing.assert_array_equal(o["proprio"], obs[0]["proprio"])
        source = obs[0]["images/agentview"].astype(int)
        for config, o in zip(configs[1:], obs[1:]):
            difference = np.abs(o["images/agentview"].astype(int) - source).mean()
            if config.domain == "source":
                assert difference == 0  # robosuite's own look is env=franka's
            else:
                assert difference > 10, config.domain
    finally:
        for env in envs:
            env.close()


def test_metaworld_shifted_keeps_the_physics_and_changes_the_pixels():
    from embodied.envs.metaworld.config import MetaWorldConfig, ShiftedMetaWorldConfig

    configs = [MetaWorldConfig(task="pick-place-v3", image_size=32, instruction_prefix="source domain: "),
               ShiftedMetaWorldConfig(task="pick-place-v3", image_size=32, domain="dark")]  # fmt: skip
    envs = [make_env(c) for c in configs]
    try:
        obs = [env.reset(seed=3)[0] for env in envs]
        for action in np.random.default_rng(0).uniform(-1, 1, (8, 4)).astype(np.float32):
            obs = [env.step(action)[0] for env in envs]
            np.testing.assert_array_equal(obs[1]["state"], obs[0]["state"])
            np.testing.assert_array_equal(obs[1]["proprio"], obs[0]["proprio"])
        assert np.abs(obs[1]["images/corner"].astype(int) - obs[0]["images/corner"]).mean() > 10
        assert obs[0]["language_instruction"].startswith("source domain: ")
        assert not obs[1]["language_instruction"].startswith("source domain")
    finally:
        for env in envs:
            env.close()


def test_a_look_override_moves_the_camera_and_bad_names_are_refused():
    base = make_env(ShiftedFrankaConfig(image_size=32, domain="source"))
    turned = make_env(ShiftedFrankaConfig(image_size=32, domain="source", look={"camera_yaw": 10.0}))
    try:
        a, b = base.reset(seed=2)[0], turned.reset(seed=2)[0]
        assert np.abs(a["images/agentview"].astype(int) - b["images/agentview"]).mean() > 5
        np.testing.assert_array_equal(a["state"], b["state"])
    finally:
        base.close()
        turned.close()
    with pytest.raises(ValueError, match="env.domain='sunset'"):
        ShiftedFrankaConfig(domain="sunset")
    with pytest.raises(ValueError, match="unknown fields \\['table_colour'\\]"):
        ShiftedFrankaConfig(look={"table_colour": [1, 0, 0, 1]})


@pytest.mark.parametrize("task, stages", [
    ("lift", ["gripper open, reaching above the red cube", "gripper open, lowering onto the red cube",
              "gripper closing around the red cube", "the red cube grasped, lifting it"]),
    ("stack", ["gripper open, reaching above the red cube", "gripper open, lowering onto the red cube",
               "gripper closing around the red cube", "the red cube grasped, lifting it",
               "the red cube lifted, carrying it to the green cube", "lowering the red cube onto the green cube",
               "gripper opening, releasing the red cube on the green cube"]),
])  # fmt: skip
def test_captions_follow_the_experts_stages_in_a_store(tmp_path, task, stages):
    env = ShiftedFrankaConfig(task=task, image_size=32, domain="dark")
    out = collect(CollectConfig(env=env, episodes=1, out=str(tmp_path / "s.zarr"), num_workers=0), tmp_path)
    with EpisodeStore(out) as store:
        assert store.features[CAPTION].kind == "language"
        captions = store.episode(0, [CAPTION])[CAPTION]
        assert len(captions) == store.n_steps
        runs = [c for i, c in enumerate(captions) if i == 0 or captions[i - 1] != c]  # stages in order, no repeats
        assert runs[: len(stages)] == stages
        assert set(store.vocabulary(CAPTION)) == set(captions)
        # the gripper closes exactly in the stages that say so
        closing = store.episode(0, ["action"])["action"][:, 6] > 0
        says = np.array([("closing" in c or "grasped" in c or "lifted" in c or "lowering the" in c) for c in captions])
        np.testing.assert_array_equal(closing, says)
