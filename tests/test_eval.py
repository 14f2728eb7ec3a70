"""Rollout evaluation: results JSON, videos, seeds disjoint from collection, Wilson intervals, CLI errors."""

from __future__ import annotations

import json

import imageio.v2 as imageio
import pytest

from embodied.cli import main
from embodied.collect import EVAL_SEED_OFFSET
from embodied.envs.franka.config import FrankaConfig
from embodied.evaluate import eval_env_config, wilson_interval
from embodied.policies.bc import BCConfig
from embodied.train import TrainConfig, train


@pytest.fixture(scope="module")
def checkpoint(image_store, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("bc_run")
    # with rollout evaluation during training (one short episode at step 5)
    job = TrainConfig(
        env=FrankaConfig(image_size=32, max_episode_steps=10),
        policy=BCConfig(encoder={"name": "cnn", "dim": 32}),
        dataset=str(image_store),
        steps=5,
        batch_size=16,
        run_dir=str(run_dir),
        progress=False,
        eval_every=5,
        eval_episodes=1,
        eval_num_envs=1,
    )
    final = train(job, run_dir)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    (evaluation,) = [r for r in rows if r["split"] == "eval"]
    assert evaluation["step"] == 5 and evaluation["mean_length"] <= 10
    assert list((run_dir / "eval" / "step_0000005" / "videos").glob("*.mp4"))
    return final


def test_eval_two_episodes_writes_results_and_video(checkpoint, tmp_path, capsys):
    code = main(
        [
            "eval",
            f"checkpoint={checkpoint}",
            "episodes=2",
            "videos=1",
            "max_episode_steps=15",
            f"run_dir={tmp_path}",
            "progress=false",
        ]
    )
    assert code == 0
    assert "success" in capsys.readouterr().out
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["episodes"] == 2 and 0.0 <= result["success_rate"] <= 1.0
    low, high = result["success_ci95"]
    assert 0.0 <= low <= result["success_rate"] <= high <= 1.0
    episodes = result["per_episode"]
    assert [e["seed"] for e in episodes] == [EVAL_SEED_OFFSET, EVAL_SEED_OFFSET + 1]
    assert all(1 <= e["length"] <= 15 for e in episodes)
    assert result["checkpoint"] == str(checkpoint.resolve())
    assert result["env"]["image_size"] == 32 and result["env"]["obs_mode"] == "image"
    (video,) = result["videos"]
    frames = imageio.mimread(video, format="FFMPEG", memtest=False)
    assert len(frames) == episodes[0]["length"] + 1 and frames[0].shape == (256, 256, 3)


def test_state_only_policy_evaluates_without_cameras(image_store):
    from embodied.datasets.store import EpisodeStore
    from embodied.policies import make_policy

    store = EpisodeStore(image_store)
    policy = make_policy({"name": "bc", "obs_keys": ["proprio", "state"]}, store.features, store.stats)
    env = eval_env_config(FrankaConfig(image_size=32), policy, max_episode_steps=7)
    assert env.obs_mode == "state" and env.max_episode_steps == 7


def test_wilson_interval():
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_eval_needs_an_existing_checkpoint(tmp_path, capsys):
    assert main(["eval"]) == 2
    assert "checkpoint=DIR" in capsys.readouterr().err
    assert main(["eval", f"checkpoint={tmp_path / 'missing'}"]) == 2
    assert "missing" in capsys.readouterr().err
