"""`embodied align` end to end on real lift_zone rollouts: a learned reward (frozen OT to preferred demos) drives a
round of DPO on a tiny Diffusion Policy; the report, videos and aligned checkpoint appear; resume continues the
round counter without redoing finished rounds; a changed setting or a missing resume=true is refused."""

from __future__ import annotations

import json
import shutil

import imageio.v2 as imageio
import pytest
import torch
from safetensors.torch import load_file

from embodied.cli import main
from embodied.datasets.store import EpisodeStore
from embodied.envs.franka.config import FrankaConfig
from embodied.policies import load_policy
from embodied.policies.diffusion import DiffusionConfig
from embodied.training.fit_policy import TrainConfig, train


@pytest.fixture(scope="module")
def zone_policy(zone_rollouts, tmp_path_factory):
    run = tmp_path_factory.mktemp("zone_policy")
    policy = DiffusionConfig.tiny()
    policy.obs_keys = ["proprio", "state"]  # the reward's camera is rendered for it all the same
    job = TrainConfig(env=FrankaConfig(task="lift_zone", image_size=32), policy=policy, dataset=str(zone_rollouts),
                      steps=3, batch_size=8, run_dir=str(run), progress=False)  # fmt: skip
    return train(job, run)


@pytest.fixture(scope="module")
def ot_reward(zone_rollouts, zone_demos, tmp_path_factory):
    run = tmp_path_factory.mktemp("ot_reward")
    store = run / "rollouts.zarr"  # a copy: answers written here stay out of the shared store
    shutil.copytree(zone_rollouts, store)
    assert main(["reward", "simulate", f"dataset={store}", "queries=10"]) == 0
    main(["reward", "align", f"dataset={store}", f"demos={zone_demos}", "reward.method=ot", "encoder=cnn",
          f"run_dir={run}", "progress=false"])  # fmt: skip
    return run / "reward"


def _align(checkpoint, reward, run_dir, *extra):
    return main(["align", f"checkpoint={checkpoint}", f"reward={reward}", "episodes_per_round=3", "steps_per_round=2",
                 "batch_size=4", "eval_episodes=2", "videos=1", "max_episode_steps=24", "winners_succeed=false",
                 "num_envs=1", f"run_dir={run_dir}", "progress=false", *extra])  # fmt: skip


def test_align_runs_rounds_reports_and_resumes(zone_policy, ot_reward, tmp_path, capsys):
    run = tmp_path / "align"
    assert _align(zone_policy, ot_reward, run, "rounds=1") == 0
    report = json.loads((run / "report.json").read_text())
    assert report["method"] == "dpo" and len(report["rounds"]) == 1
    for side in ("before", "after"):
        assert report[side]["episodes"] == 2 and 0 <= report[side]["preference_rate"] <= 1
        assert len(report[side]["returns"]) == 2
    first = report["rounds"][0]
    assert first["episodes"] == 3 and first["training"]["step"] == 2 and "dpo_accuracy" in first["training"]
    assert "| before |" in (run / "report.md").read_text()
    assert (run / "alignment_curves.png").stat().st_size and (run / "reward_curves.png").stat().st_size
    (video,) = report["videos"]
    single = imageio.mimread(next((run / "before" / "videos").glob("*.mp4")), memtest=False)[0]
    assert imageio.mimread(video, memtest=False)[0].shape[1] == 2 * single.shape[1]  # before | after
    aligned = load_policy(run / "policy")
    assert aligned.config.name == "diffusion"
    with EpisodeStore(run / "rounds" / "round_000" / "rollouts.zarr") as store:
        assert store.n_episodes == 3 and "images/agentview" in store.features  # the reward's camera was rendered
    done = (run / "rounds" / "round_000" / "round.json").read_text()

    capsys.readouterr()
    assert _align(zone_policy, ot_reward, run, "rounds=2") == 1
    assert "pass resume=true" in capsys.readouterr().err
    assert _align(zone_policy, ot_reward, run, "rounds=2", "beta=5", "resume=true") == 1
    assert "beta differ" in capsys.readouterr().err

    assert _align(zone_policy, ot_reward, run, "rounds=2", "resume=true") == 0
    report = json.loads((run / "report.json").read_text())
    assert [r["round"] for r in report["rounds"]] == [0, 1]
    assert (run / "rounds" / "round_000" / "round.json").read_text() == done  # finished rounds are not redone
    # the aligned policy and the "after" evaluation are those of the last round now, not of the first run's
    assert json.loads((run / "after" / "rounds.json").read_text()) == 2
    last = load_file(run / "rounds" / "round_001" / "checkpoints" / "last" / "model.safetensors")
    aligned = load_file(run / "policy" / "model.safetensors")
    assert aligned.keys() == last.keys() and all(torch.equal(aligned[k], last[k]) for k in last)
    with EpisodeStore(run / "rounds" / "round_001" / "rollouts.zarr") as store:
        seeds = sorted(int(s) for s in store.episode_info()["seed"])
    with EpisodeStore(run / "rounds" / "round_000" / "rollouts.zarr") as store:
        assert not set(seeds) & {int(s) for s in store.episode_info()["seed"]}  # each round's own scenes


def test_align_needs_a_policy_and_a_reward(tmp_path, capsys):
    assert main(["align", f"run_dir={tmp_path}"]) == 2
    assert "checkpoint=POLICY_DIR and reward=REWARD_DIR" in capsys.readouterr().err
