"""Reward learning: Bradley-Terry gradients reach the trainable part of the encoder only, alignment on a tiny real
preference set orders held-out episodes better than chance, and the commands run end to end."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict

import numpy as np
import pytest
import torch

from embodied.cli import main
from embodied.encoders.resnet import ResNetEncoderConfig
from embodied.encoders.vit import ViTEncoderConfig
from embodied.rewards.config import RewardConfig
from embodied.rewards.model import VisualReward


def _batch(generator, k=3, t=5):
    x = torch.randint(0, 255, (2, k, t, 32, 32, 3), dtype=torch.uint8, generator=generator)
    mask = torch.ones(2, k, t, dtype=torch.bool)
    mask[0, 1, 3:] = False  # episodes of different lengths
    return {"x": x, "mask": mask, "ranks": torch.tensor([[2.0, 0.0, 1.0], [0.0, 1.0, 1.0]])}


@pytest.mark.parametrize(
    "method,encoder",
    [("rapl", {**asdict(ResNetEncoderConfig.tiny()), "train": "last_n", "last_n": 1}),
     ("rlhf", {**asdict(ResNetEncoderConfig.tiny()), "train": "last_n", "last_n": 1}),
     ("rapl", {**asdict(ViTEncoderConfig.tiny("vit")), "train": "lora", "lora_rank": 2})],
    ids=["rapl-resnet-last_n", "rlhf-resnet-last_n", "rapl-vit-lora"],
)  # fmt: skip
def test_bradley_terry_gradients_reach_only_the_trainable_part_of_the_encoder(method, encoder):
    model = VisualReward(RewardConfig(method=method, encoder=encoder, head_dim=8), (32, 32, 3))
    assert not model.caches_features
    loss, metrics = model.compute_loss(_batch(torch.Generator().manual_seed(0)))
    loss.backward()
    assert np.isfinite(metrics["loss"])
    trainable = {n for n, p in model.encoder.named_parameters() if p.requires_grad}
    frozen = {n for n, p in model.encoder.named_parameters() if not p.requires_grad}
    assert trainable and frozen
    assert all(model.encoder.get_parameter(n).grad is not None for n in trainable)
    assert any(model.encoder.get_parameter(n).grad.abs().sum() > 0 for n in trainable)
    assert all(model.encoder.get_parameter(n).grad is None for n in frozen)
    assert all(p.grad is not None for p in model.head.parameters())


def test_rapl_refuses_pairs_and_equal_triplets_target_one_half():
    model = VisualReward(RewardConfig(encoder={"name": "cnn", "channels": [8], "strides": [2], "dim": 8}), (32, 32, 3))
    batch = _batch(torch.Generator().manual_seed(1))
    _, targets = model.rapl_logits(batch)
    assert targets.tolist() == [1.0, 0.5]  # second query: middle and worst are equally good
    with pytest.raises(ValueError, match="triplet"):
        model.compute_loss({**batch, "ranks": torch.tensor([[0.0, 1.0, -1.0], [0.0, 1.0, -1.0]])})


def _accuracy(checkpoint, store, held_out):
    from embodied.datasets.store import EpisodeStore
    from embodied.rewards.checkpoint import load_reward
    from embodied.rewards.queries import EpisodeBank, episode_rewards, preference_accuracy

    model, _ = load_reward(checkpoint)
    bank = EpisodeBank(EpisodeStore(store), "images/agentview", model.config.frame_stride, np.arange(24))
    if model.caches_features:
        bank.encode(model)
    rewards = episode_rewards(model, bank, np.arange(24))
    return preference_accuracy({e: float(r.sum()) for e, r in rewards.items()}, held_out)


def test_alignment_on_real_preferences_beats_chance_and_the_commands_chain(zone_rollouts, zone_demos, tmp_path,
                                                                           capsys):  # fmt: skip
    from embodied.datasets.preferences import Preferences, read_preferences
    from embodied.datasets.store import EpisodeStore
    from embodied.rewards.person import PersonConfig, SimulatedPerson, episode_costs, sample_queries

    store = tmp_path / "rollouts.zarr"
    shutil.copytree(zone_rollouts, store)
    assert main(["reward", "simulate", f"dataset={store}", "queries=80", "episodes=[0,16]"]) == 0
    assert len(read_preferences(store)) == 80
    # held-out queries over the 8 episodes no training query shows, answered without noise
    costs = episode_costs(EpisodeStore(store))
    rows = sample_queries(np.arange(16, 24), 40, 3, np.random.default_rng(5))
    person = SimulatedPerson(PersonConfig(), costs)
    held_out = Preferences(rows, np.stack([person.rank(r) for r in rows]), np.zeros(40, np.int32), ["p"],
                           np.zeros(40))  # fmt: skip
    common = [f"dataset={store}", f"demos={zone_demos}", "encoder=cnn", "reward.features=tokens", "eval_every=10",
              "progress=false", "device=cpu"]  # fmt: skip
    untrained, rapl, rlhf = tmp_path / "untrained", tmp_path / "rapl", tmp_path / "rlhf"
    assert main(["reward", "align", *common, "steps=1", "optim.lr=1e-9", f"run_dir={untrained}"]) == 0
    assert main(["reward", "align", *common, "steps=150", f"run_dir={rapl}"]) == 0
    assert main(["reward", "align", *common, "steps=150", "reward.method=rlhf", f"run_dir={rlhf}"]) == 0
    before = _accuracy(untrained / "reward", store, held_out)
    after = _accuracy(rapl / "reward", store, held_out)
    after_rlhf = _accuracy(rlhf / "reward", store, held_out)
    assert after > 0.6 and after > before, (before, after)
    assert after_rlhf > 0.6, after_rlhf
    summary = json.loads((rapl / "summary.json").read_text())
    assert summary["queries"] == 80 and summary["held_out_queries"] == 16

    capsys.readouterr()
    assert main(["reward", "score", f"checkpoint={rapl / 'reward'}", f"dataset={store}", "progress=false",
                 f"out={tmp_path / 'scores'}"]) == 0  # fmt: skip
    assert "Spearman" in capsys.readouterr().out
    scores = np.load(tmp_path / "scores" / "rewards.npz")
    with EpisodeStore(store) as episodes:
        assert scores["rewards"].shape == (episodes.n_steps,) and np.isfinite(scores["rewards"]).all()
    scored = json.loads((tmp_path / "scores" / "summary.json").read_text())
    assert len(scored["returns"]) == 24 and -1 <= scored["spearman_step"] <= 1
    assert (tmp_path / "scores" / "reward_curves.png").stat().st_size > 10_000


def test_bad_inputs_get_clear_errors(zone_rollouts, zone_demos, tmp_path, capsys):
    store = tmp_path / "rollouts.zarr"
    shutil.copytree(zone_rollouts, store)
    assert main(["reward", "align", f"dataset={store}", f"demos={zone_demos}", "encoder=cnn"]) == 1
    assert "no answered preference queries" in capsys.readouterr().err
    assert main(["reward", "align", f"dataset={store}", "reward.method=nope"]) == 2
    assert main(["reward", "frobnicate"]) == 2
    assert "align | score | simulate" in capsys.readouterr().err
    assert main(["reward", "simulate", f"dataset={zone_demos}", "episodes=[0,99]"]) == 1
    assert main(["reward", "score", f"checkpoint={tmp_path}", f"dataset={store}"]) == 1
    assert "not a reward checkpoint" in capsys.readouterr().err


def test_pairs_train_rlhf_without_demos_and_rapl_refuses_them(zone_rollouts, tmp_path, capsys):
    from embodied.datasets.preferences import query_key, read_preferences
    from embodied.rewards.align import split_preferences
    from embodied.rewards.checkpoint import load_reward

    store = tmp_path / "rollouts.zarr"
    shutil.copytree(zone_rollouts, store)
    for _ in range(2):  # a rerun with the same seed adds new queries, never a copy of an answer already given
        assert main(["reward", "simulate", f"dataset={store}", "queries=30", "query_size=2"]) == 0
    prefs = read_preferences(store)
    assert len(prefs) == 60 and len({query_key(row) for row in prefs.episodes}) == 60
    train, held = split_preferences(prefs.subset(np.r_[np.arange(60), np.arange(10)]), 0.2, 0)  # ten answered twice
    assert not {query_key(r) for r in train.episodes} & {query_key(r) for r in held.episodes}
    assert main(["reward", "align", f"dataset={store}", "demos=x", "encoder=cnn", "progress=false"]) == 1
    assert "only pair answers" in capsys.readouterr().err
    run = tmp_path / "rlhf"
    assert main(["reward", "align", f"dataset={store}", "reward.method=rlhf", "encoder=cnn", "steps=20",
                 "progress=false", f"run_dir={run}"]) == 0  # fmt: skip
    model, info = load_reward(run / "reward")
    assert len(model.demo_features) == 0 and info["held_out_queries"] == 12
    assert main(["reward", "score", f"checkpoint={run / 'reward'}", f"dataset={store}", "progress=false",
                 f"out={tmp_path / 'scores'}"]) == 0  # fmt: skip


def test_ot_rewards_match_each_episode_to_its_closest_demo():
    from embodied.rewards.ot import ot_frame_costs

    generator = torch.Generator().manual_seed(3)
    model = VisualReward(RewardConfig(method="ot", encoder={"name": "cnn", "channels": [8], "strides": [2], "dim": 8}),
                         (32, 32, 3))  # fmt: skip
    demos = [torch.randint(0, 255, (n, 32, 32, 3), dtype=torch.uint8, generator=generator) for n in (4, 6, 5)]
    model.eval()  # as rewards are computed (no training-time augmentation)
    model.set_demos(demos)
    x = torch.randint(0, 255, (2, 5, 32, 32, 3), dtype=torch.uint8, generator=generator)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    with torch.no_grad():
        rewards = model.frame_rewards(x, mask)
        z = model.embed(x)
        for e in range(2):
            n = int(mask[e].sum())
            per_demo = [ot_frame_costs(z[e : e + 1, :n], model.embed(model._features(d))[None])[0] for d in demos]
            closest = min(per_demo, key=lambda c: float(c.sum()))
            torch.testing.assert_close(rewards[e, :n], -closest, atol=1e-4, rtol=1e-4)
            assert (rewards[e, n:] == 0).all()
