"""Rollout evaluation: results JSON, videos, seeds disjoint from collection, Wilson intervals, CLI errors."""

from __future__ import annotations

import json
import shutil

import imageio.v2 as imageio
import numpy as np
import pytest

from embodied.cli import main
from embodied.envs.base import EVAL_SEED_OFFSET
from embodied.envs.franka.config import FrankaConfig
from embodied.evaluation.evaluate import eval_env_config
from embodied.evaluation.metrics import wilson_interval
from embodied.policies.bc import BCConfig
from embodied.training.fit_policy import TrainConfig, train


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


def test_state_only_policy_evaluates_without_cameras(image_store, tmp_path):
    """A policy trained without images, on a store that has them, rolls out in an env that renders no camera."""
    from embodied.datasets.store import EpisodeStore
    from embodied.evaluation.evaluate import evaluate
    from embodied.policies import make_policy

    store = EpisodeStore(image_store)
    policy = make_policy({"name": "bc", "obs_keys": ["proprio", "state"]}, store.features, store.stats)
    env = eval_env_config(FrankaConfig(image_size=32), policy, max_episode_steps=7)
    assert env.obs_mode == "state" and env.max_episode_steps == 7
    result = evaluate(policy, env, episodes=2, num_envs=1, out_dir=tmp_path, videos=0, progress=False)
    assert [e["length"] for e in result["per_episode"]] == [7, 7]  # an untrained policy runs to the limit
    assert result["env"]["obs_mode"] == "state"
    from embodied.envs import make_env

    probe = make_env(env)
    observation, _ = probe.reset(seed=0)
    assert not [k for k in observation if k.startswith("images/")]  # what the policy was evaluated on
    probe.close()


def test_wilson_interval():
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_eval_needs_an_existing_checkpoint(tmp_path, capsys):
    assert main(["eval"]) == 2
    assert "checkpoint=DIR" in capsys.readouterr().err
    assert main(["eval", f"checkpoint={tmp_path / 'missing'}"]) == 2
    assert "missing" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncated", "zeroed", "random"])
def test_a_damaged_checkpoint_is_refused_naming_the_file(checkpoint, tmp_path, capsys, damage):
    from embodied.integrity import CheckpointError
    from embodied.policies.base import Policy

    copy = tmp_path / "checkpoint"
    shutil.copytree(checkpoint, copy)
    weights = copy / "model.safetensors"
    data = weights.read_bytes()
    header = 8 + int.from_bytes(data[:8], "little")  # safetensors: length, JSON header, then the tensors
    rng = np.random.default_rng(0)
    damaged = {
        "truncated": data[: len(data) // 2],
        "zeroed": data[:header] + bytes(len(data) - header),
        "random": data[:header] + rng.integers(0, 256, len(data) - header, dtype=np.uint8).tobytes(),
    }[damage]
    weights.write_bytes(damaged)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        Policy.from_pretrained(copy)
    assert main(["eval", f"checkpoint={copy}", "episodes=1", f"run_dir={tmp_path / 'eval'}", "progress=false"]) == 1
    err = capsys.readouterr().err
    assert "model.safetensors" in err and "damaged" in err and "Traceback" not in err
    # a checkpoint without a manifest (an earlier version's) still fails clearly where the damage shows
    (copy / "checksums.json").unlink()
    if damage == "zeroed":
        Policy.from_pretrained(copy)  # zeros are valid weights: only the manifest can tell
    else:
        with pytest.raises(CheckpointError, match="model.safetensors"):
            Policy.from_pretrained(copy)
