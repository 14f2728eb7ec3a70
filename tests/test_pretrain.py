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


def test_pretraining_resumes_where_it_stopped(image_store, tmp_path):
    """Pretraining checkpoints like policy training: a run stopped at step 4 and resumed to 8 logs the same losses
    as a run of 8, and each checkpoint loads as a pretrained encoder."""

    def job(run_dir, steps, resume=False):
        config = PretrainConfig(policy={"encoder": {"name": "vit", "model": TINY_VIT}}, objective="time_contrastive",
                                objective_args={"projection_dim": 16}, dataset=str(image_store), steps=steps,
                                batch_size=8, log_every=1, checkpoint_every=4, progress=False, resume=resume,
                                run_dir=str(run_dir))  # fmt: skip
        config.optim.warmup_steps = 2
        config.optim.schedule = "constant"  # the run of 4 then 8 steps has the 8-step run's learning rates
        return config

    pretrain(job(tmp_path / "full", 8), tmp_path / "full")
    pretrain(job(tmp_path / "cut", 4), tmp_path / "cut")
    pretrain(job(tmp_path / "cut", 8, resume=True), tmp_path / "cut")

    def losses(run_dir):
        return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]

    assert losses(tmp_path / "cut") == pytest.approx(losses(tmp_path / "full"), rel=1e-5)
    step_4 = tmp_path / "cut" / "checkpoints" / "step_0000004"
    assert make_encoder({"name": "vit", "pretrained": str(step_4)})(torch.zeros(1, 32, 32, 3, dtype=torch.uint8))


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
