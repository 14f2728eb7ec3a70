"""Rollouts spread over torchrun ranks (gloo, CPU): collection writes one shard per rank and merges them into the
store one process would write; evaluation gathers the same records and intervals as one process; merging refuses
overlapping seeds; in-training evaluation spreads over the training ranks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embodied.cli import main
from embodied.datasets.merge import OverlappingShards, merge_stores
from embodied.datasets.store import EpisodeStore
from embodied.evaluation.collection import CollectConfig, collect
from tests.test_distributed import BC, finish, torchrun

STATE_LIFT = ["env=franka", "env.task=lift", "env.obs_mode=state"]


def collected(path, episodes: int, seed: int = 0):
    config = CollectConfig(env={"name": "franka", "task": "lift", "obs_mode": "state"}, episodes=episodes,
                           out=str(path), num_workers=0, seed=seed)  # fmt: skip
    return collect(config, path.parent)


def test_two_ranks_collect_the_store_one_process_would(tmp_path):
    out = tmp_path / "two.zarr"
    two = torchrun(2, ["collect", *STATE_LIFT, "episodes=4", f"out={out}", "num_workers=0",
                       f"run_dir={tmp_path / 'run'}"])  # fmt: skip
    one = collected(tmp_path / "one.zarr", 4)
    text = finish(two)
    assert "merged 2 shards" in text and text.count("store:") == 1
    assert not (tmp_path / "two.zarr.shards").exists()
    with EpisodeStore(one) as a, EpisodeStore(out) as b:
        assert sorted(a.episode_info()["seed"]) == list(b.episode_info()["seed"]) == [0, 1, 2, 3]
        by_seed = {int(s): i for i, s in enumerate(a.episode_info()["seed"])}
        for j, seed in enumerate(b.episode_info()["seed"]):
            x, y = a.episode(by_seed[int(seed)]), b.episode(j)
            for key in ("action", "state", "reward", "is_terminal"):
                np.testing.assert_array_equal(x[key], y[key])
        assert b.stats["action"]["mean"] == pytest.approx(a.stats["action"]["mean"], rel=1e-5)
    again = finish(torchrun(2, ["collect", *STATE_LIFT, "episodes=6", f"out={out}", "num_workers=0",
                                f"run_dir={tmp_path / 'run2'}"]))  # fmt: skip
    assert "2 episodes added" in again  # resumed: each rank collected only its missing seeds
    with EpisodeStore(out) as b:
        assert list(b.episode_info()["seed"]) == [0, 1, 2, 3, 4, 5]


def test_merging_refuses_overlapping_seeds_and_resumes(tmp_path, capsys):
    first, second, third = collected(tmp_path / "a.zarr", 2), collected(tmp_path / "b.zarr", 2, seed=1), None
    with pytest.raises(OverlappingShards, match="seed 1 in .*a.zarr and .*b.zarr"):
        merge_stores(tmp_path / "merged.zarr", [first, second])
    assert not (tmp_path / "merged.zarr").exists()  # refused before anything was written
    third = collected(tmp_path / "c.zarr", 2, seed=2)
    assert main(["data", "merge", str(tmp_path / "merged.zarr"), str(first), str(third)]) == 0
    assert "4 episodes added" in capsys.readouterr().out
    assert merge_stores(tmp_path / "merged.zarr", [first, third], progress=False) == 0  # already there: skipped
    with EpisodeStore(tmp_path / "merged.zarr") as merged:
        assert list(merged.episode_info()["seed"]) == [0, 1, 2, 3] and merged.n_episodes == 4


def test_two_ranks_evaluate_like_one_and_training_evaluates_across_ranks(image_store, tmp_path):
    run = tmp_path / "train"
    args = ["train", *BC, f"dataset={image_store}", "steps=2", "eval_every=2", "eval_episodes=1",
            "eval_num_envs=1", "env.max_episode_steps=8", f"run_dir={run}"]  # fmt: skip
    finish(torchrun(2, args))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    (evaluation,) = [r for r in rows if r["split"] == "eval"]
    assert evaluation["step"] == 2 and evaluation["mean_length"] <= 8
    results = json.loads((run / "eval" / "step_0000002" / "results.json").read_text())
    assert [r["episode"] for r in results["per_episode"]] == [0]  # rank 0 ran it, rank 1 had none and waited

    checkpoint = run / "checkpoints" / "last"
    evaluate = ["eval", f"checkpoint={checkpoint}", "episodes=4", "videos=2", "max_episode_steps=10",
                "num_envs=1", "progress=false"]  # fmt: skip
    two = torchrun(2, [*evaluate, f"run_dir={tmp_path / 'two'}"])
    assert main([*evaluate, f"run_dir={tmp_path / 'one'}"]) == 0
    out = finish(two)
    assert out.count("results:") == 1
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    spread = json.loads((tmp_path / "two" / "results.json").read_text())
    for a, b in zip(one["per_episode"], spread["per_episode"], strict=True):
        assert (a["episode"], a["seed"], a["success"], a["length"]) == (b["episode"], b["seed"], b["success"],
                                                                        b["length"])  # fmt: skip
        assert a["return"] == pytest.approx(b["return"], rel=1e-4, abs=1e-4)
    assert one["success_ci95"] == spread["success_ci95"]
    videos = sorted(p.name for p in (tmp_path / "two" / "videos").glob("*.mp4"))
    assert len(videos) == 2  # episode 0 recorded by rank 0, episode 1 by rank 1
