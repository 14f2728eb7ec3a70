"""Self-supervised pretraining: TOV labels and sampling, each objective lowers its loss, the output loads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from embodied.cli import main
from embodied.encoders import make_encoder
from embodied.pretrain.fit import PretrainConfig, pretrain
from embodied.pretrain.frames import ORDERED, SHUFFLED, FrameSampler, tov_orders, triplet_times

TINY_VIT = {
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "image_size": 32,
    "patch_size": 8,
}


def test_tov_labels_match_the_orders():
    orders, labels = tov_orders(np.random.default_rng(0), 200)
    assert labels.sum() == 100
    for order, label in zip(orders, labels):
        assert (tuple(order) == ORDERED) == bool(label)
        if not label:
            assert tuple(order) in SHUFFLED


def test_triplet_times_are_increasing_inside_the_episode():
    rng = np.random.default_rng(1)
    start = rng.integers(0, 100, 500)
    end = start + rng.integers(3, 40, 500)
    times = triplet_times(rng, start, end, max_gap=5)
    assert np.all(times[:, 0] >= start) and np.all(times[:, 2] < end)
    assert np.all(np.diff(times, axis=1) >= 1) and np.all(np.diff(times, axis=1) <= 5)


def test_frame_sampler_shapes(image_store):
    from embodied.datasets.store import EpisodeStore

    frames = FrameSampler([EpisodeStore(image_store)], "images/agentview")
    rng = np.random.default_rng(0)
    triplets, labels = frames.triplets(rng, 6, max_gap=4)
    assert triplets.shape == (6, 3, 32, 32, 3) and triplets.dtype == np.uint8 and labels.shape == (6,)
    anchors, positives = frames.pairs(rng, 5, window=2)
    assert anchors.shape == positives.shape == (5, 32, 32, 3)
    with pytest.raises(KeyError, match="cameras"):
        FrameSampler([EpisodeStore(image_store)], "images/wrist")


@pytest.mark.parametrize("objective,name", [("mae", "mae"), ("tov_vicreg", "vit"), ("time_contrastive", "vit")])
def test_objective_lowers_its_loss_and_the_encoder_loads(objective, name, image_store, tmp_path):
    job = PretrainConfig(
        policy={"encoder": {"name": name, "model": TINY_VIT}},
        objective=objective,
        dataset=str(image_store),
        steps=40,
        batch_size=16,
        log_every=1,
        progress=False,
    )
    job.optim.lr, job.optim.warmup_steps = 1e-3, 5
    out = pretrain(job, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows]
    assert len(losses) == 40 and np.mean(losses[-8:]) < np.mean(losses[:8])
    loaded = make_encoder({"name": name, "pretrained": str(out)}).eval()
    fresh = make_encoder({"name": name, "model": TINY_VIT}).eval()
    images = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    assert loaded(images).pooled.shape == (2, 32)
    assert not torch.allclose(loaded(images).pooled, fresh(images).pooled)  # trained weights, not an init
    info = json.loads((out / "embodied_pretrain.json").read_text())
    assert info["objective"] == objective and "loss" in info["final_metrics"]
    if name == "mae":
        assert loaded.backbone.config.mask_ratio == 0.0  # as an encoder it sees every patch
    weights = out / "model.safetensors"  # a damaged output is refused, naming the file
    weights.write_bytes(weights.read_bytes()[:-16] + bytes(16))
    from embodied.integrity import CheckpointError

    with pytest.raises(CheckpointError, match="model.safetensors does not match its SHA-256"):
        make_encoder({"name": name, "pretrained": str(out)})


def test_cli_pretrain_and_errors(image_store, tmp_path, capsys):
    model = (
        "+policy.encoder.model={hidden_size:16,num_hidden_layers:1,num_attention_heads:2,image_size:32,patch_size:8}"
    )
    code = main(
        [
            "pretrain",
            "objective=time_contrastive",
            f"dataset={image_store}",
            "steps=2",
            "batch_size=4",
            model,
            f"run_dir={tmp_path}",
            "progress=false",
        ]
    )
    assert code == 0
    assert "policy.encoder.pretrained=" in capsys.readouterr().out
    assert main(["pretrain", "objective=mae", f"dataset={image_store}", "steps=1", f"run_dir={tmp_path / 'x'}"]) == 1
    assert "encoder=mae" in capsys.readouterr().err
    assert main(["pretrain", "objective=nope", f"dataset={image_store}", f"run_dir={tmp_path / 'y'}"]) == 1
    assert "objective must be one of" in capsys.readouterr().err
