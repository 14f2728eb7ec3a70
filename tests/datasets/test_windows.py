"""Training windows: padding at episode edges, torch datasets over a real collected store, mixtures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embodied.datasets import EpisodeStore, WindowSampler, horizon_offsets
from embodied.datasets.window_dataset import MixtureDataset, WindowDataset


def test_horizon_offsets():
    assert horizon_offsets(2, 4) == ([-1, 0], [-1, 0, 1, 2])
    assert horizon_offsets(1, 3) == ([0], [0, 1, 2])
    with pytest.raises(ValueError):
        horizon_offsets(0, 3)


def test_padding_at_both_episode_edges():
    # Two episodes: steps 0-4 and 5-7.
    sampler = WindowSampler(np.array([5, 8]), {"obs": [-2, -1, 0], "action": [0, 1, 2, 3]})
    assert len(sampler) == 8
    rows, pad = sampler.rows(0)["obs"]  # first step of episode 0: two padded past steps
    assert rows.tolist() == [0, 0, 0] and pad.tolist() == [True, True, False]
    rows, pad = sampler.rows(3)["action"]  # near the end of episode 0: steps 5, 6 belong to episode 1
    assert rows.tolist() == [3, 4, 4, 4] and pad.tolist() == [False, False, True, True]
    rows, pad = sampler.rows(5)["obs"]  # first step of episode 1 never reads episode 0
    assert rows.tolist() == [5, 5, 5] and pad.tolist() == [True, True, False]
    rows, pad = sampler.rows(7)["action"]
    assert rows.tolist() == [7, 7, 7, 7] and pad.tolist() == [False, True, True, True]
    only_second = WindowSampler(np.array([5, 8]), {"obs": [0]}, episodes=[1])
    assert only_second.anchors.tolist() == [5, 6, 7]


def test_window_dataset_over_collected_store(image_store):
    store = EpisodeStore(image_store)
    obs_offsets, action_offsets = horizon_offsets(2, 8)
    dataset = WindowDataset(store, {"images/agentview": obs_offsets, "proprio": obs_offsets, "action": action_offsets})
    assert len(dataset) == store.n_steps
    first = dataset[0]
    assert first["images/agentview"].shape == (2, 32, 32, 3) and first["images/agentview"].dtype == torch.uint8
    assert first["images/agentview_is_pad"].tolist() == [True, False]
    assert first["action"].shape == (8, 7) and first["action_is_pad"].tolist() == [True] + [False] * 7
    assert first["language_instruction"] == "lift the red cube"
    last = dataset[len(dataset) - 1]
    assert last["action_is_pad"].tolist() == [False, False] + [True] * 6
    assert last["episode_index"] == store.n_episodes - 1
    # Every window equals a direct read of the store, including ones that cross chunk boundaries.
    for index in range(0, len(dataset), 7):
        item = dataset[index]
        anchor = int(dataset.sampler.anchors[index])
        rows = dataset.sampler.rows(index)["action"][0]
        np.testing.assert_array_equal(item["action"].numpy(), store.read("action", 0, store.n_steps)[rows])
        assert dataset.sampler.rows(index)["proprio"][0][-1] == anchor
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=True, num_workers=2)
    batch = next(iter(loader))
    assert batch["images/agentview"].shape == (4, 2, 32, 32, 3)
    assert batch["proprio_is_pad"].shape == (4, 2)
    # a list of indices reads the same windows as one batch
    picks = [0, 9, len(dataset) - 1, 9]
    together = dataset[picks]
    for position, index in enumerate(picks):
        single = dataset[index]
        for key in ("images/agentview", "images/agentview_is_pad", "proprio", "action", "action_is_pad"):
            torch.testing.assert_close(together[key][position], single[key])
        assert together["language_instruction"][position] == single["language_instruction"]
        assert together["episode_index"][position] == single["episode_index"]


def test_mixture_draws_by_weight(image_store):
    a = WindowDataset(image_store, {"action": [0]}, episodes=[0])
    b = WindowDataset(image_store, {"action": [0]}, episodes=[1, 2])
    mix = MixtureDataset([a, b], weights=[3, 1])
    generator = torch.Generator().manual_seed(0)
    draws = torch.tensor(list(mix.sampler(4000, generator=generator)))
    from_a = (draws < len(a)).float().mean().item()
    assert abs(from_a - 0.75) < 0.03
    with pytest.raises(ValueError, match="one non-negative weight per dataset"):
        MixtureDataset([a, b], weights=[1])


def test_workers_read_lazily_without_preload(image_store):
    """Forked DataLoader workers read zarr chunks themselves (zarr resets its IO loop after fork)."""
    dataset = WindowDataset(image_store, {"proprio": [0, 1], "images/agentview": [0]}, preload=False)
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, num_workers=2, timeout=120)
    total = sum(len(batch["proprio"]) for batch in loader)
    assert total == len(dataset)


def test_mixture_batches_by_index_list_carry_each_store_name(image_store, tmp_path):
    import shutil

    other = tmp_path / "second.zarr"
    shutil.copytree(image_store, other)
    offsets = {"proprio": [0], "action": [0, 1]}
    first, second = WindowDataset(image_store, offsets), WindowDataset(other, offsets)
    mix = MixtureDataset([first, second])
    indices = [0, len(first) + 3, 5, len(first)]
    batch = mix[indices]
    assert batch["proprio"].shape == (4, 1, 9) and batch["action"].shape == (4, 2, 7)
    assert sorted(batch["dataset"]) == sorted([image_store.stem, image_store.stem, "second", "second"])
    expected = {
        tuple(first[0]["proprio"].flatten().tolist()),
        tuple(first[5]["proprio"].flatten().tolist()),
        tuple(second[3]["proprio"].flatten().tolist()),
        tuple(second[0]["proprio"].flatten().tolist()),
    }
    assert {tuple(row.flatten().tolist()) for row in batch["proprio"]} == expected


def test_merged_statistics_match_the_pooled_data():
    from embodied.datasets.stats import merge_stats

    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, (300, 2)), rng.normal(3, 2, (100, 2))

    def stats(x):
        q01, q99 = np.quantile(x, [0.01, 0.99], axis=0)
        return {"count": len(x), "mean": x.mean(0).tolist(), "std": x.std(0).tolist(), "min": x.min(0).tolist(),
                "max": x.max(0).tolist(), "q01": q01.tolist(), "q99": q99.tolist()}  # fmt: skip

    merged = merge_stats([{"x": stats(a), "only_a": stats(a)}, {"x": stats(b)}])
    pooled = np.concatenate([a, b])
    assert list(merged) == ["x"] and merged["x"]["count"] == 400
    assert np.allclose(merged["x"]["mean"], pooled.mean(0)) and np.allclose(merged["x"]["std"], pooled.std(0))
    assert np.allclose(merged["x"]["min"], pooled.min(0)) and np.allclose(merged["x"]["max"], pooled.max(0))
    assert np.all(np.array(merged["x"]["q01"]) <= np.quantile(pooled, 0.01, axis=0))
    assert np.all(np.array(merged["x"]["q99"]) >= np.quantile(pooled, 0.99, axis=0))


def test_goal_keys_read_a_future_step_of_the_same_episode_deterministically():
    ends = np.array([5, 12, 13])  # the last episode has one step: no future
    sampler = WindowSampler(ends, {"x": [0]}, goal_keys={"goal/x": "x"})
    assert sampler.source_key("goal/x") == "x" and sampler.source_key("x") == "x"
    indices = np.arange(len(sampler))
    rows, pad = sampler.rows_batch(indices)["goal/x"]
    anchors = sampler.anchors[indices]
    episode_end = ends[sampler.anchor_episode[indices]]
    future = ~pad[:, 0]
    assert ((rows[future, 0] > anchors[future]) & (rows[future, 0] < episode_end[future])).all()
    assert (pad[:, 0] == (anchors == episode_end - 1)).all()  # last steps have no future: padded, the anchor itself
    assert (rows[pad[:, 0], 0] == anchors[pad[:, 0]]).all()
    again, _ = sampler.rows_batch(indices)["goal/x"]
    assert np.array_equal(rows, again)  # the same batch reads the same goals (resumed runs)
    reordered, _ = sampler.rows_batch(indices[::-1])["goal/x"]
    assert not np.array_equal(rows[::-1], reordered)  # other batch-mates (another epoch): other goals
    draws = np.stack([sampler.rows_batch(np.array([0, i]))["goal/x"][0][0, 0] for i in range(1, 12)])
    assert set(draws.tolist()) == {1, 2, 3, 4}  # over batches, every future step of episode 0 is drawn


def test_goal_keys_through_the_dataset(image_store):
    dataset = WindowDataset(image_store, {"proprio": [0]}, goal_keys={"goal/images/agentview": "images/agentview"})
    batch = dataset.get_batch(np.arange(8))
    assert batch["goal/images/agentview"].shape == (8, 1, 32, 32, 3)
    assert batch["goal/images/agentview"].dtype == torch.uint8 and batch["goal/images/agentview_is_pad"].shape == (8, 1)
    with pytest.raises(KeyError, match="nothing"):
        WindowDataset(image_store, {"proprio": [0]}, goal_keys={"goal/x": "nothing"})
