"""Contract of every registered pretraining objective: it lowers its loss and its encoder loads afterwards."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from embodied.encoders import make_encoder
from embodied.integrity import CheckpointError
from embodied.pretrain import OBJECTIVES
from embodied.pretrain.fit import PretrainConfig, pretrain

TINY_VIT = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
            "image_size": 32, "patch_size": 8}  # fmt: skip


@pytest.mark.parametrize("objective", OBJECTIVES.names())
def test_objective_lowers_its_loss_and_the_encoder_loads(objective, image_store, tmp_path):
    """Every registered objective, on its tiny settings, lowers its loss through the Trainer, and what it trained
    loads as a pretrained encoder (and is refused once damaged)."""
    name = OBJECTIVES.get(objective).encoder_name
    job = PretrainConfig(
        policy={"encoder": {"name": name, "model": TINY_VIT}},
        objective=objective,
        objective_args=dict(OBJECTIVES.get(objective).tiny_args),
        dataset=str(image_store),
        steps=40,
        batch_size=OBJECTIVES.get(objective).tiny_batch_size,
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
    with pytest.raises(CheckpointError, match="model.safetensors does not match its SHA-256"):
        make_encoder({"name": name, "pretrained": str(out)})
