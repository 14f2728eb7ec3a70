"""`embodied bench encoders` end to end on a tiny store: probes, BC on cached features, table and chart."""

from __future__ import annotations

import json

import numpy as np

from embodied.cli import main
from embodied.evaluation.probes import ridge_probe


def test_ridge_probe_recovers_a_linear_map():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8))
    y = x @ rng.normal(size=(8, 3)) + 0.5
    assert ridge_probe(x[:150], y[:150], x[150:], y[150:], ridge=1e-6) > 0.999
    assert ridge_probe(x[:150], rng.normal(size=(150, 3)), x[150:], rng.normal(size=(50, 3)), 1e-3) < 0.2


def test_bench_encoders_writes_table_chart_and_results(image_store, tmp_path, capsys):
    encoders = (
        "encoders=[{name: cnn, dim: 16, label: small-cnn},"
        "{name: vit, model: {hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2,"
        " image_size: 32, patch_size: 8}}]"
    )
    code = main(
        [
            "bench",
            "encoders",
            f"dataset={image_store}",
            "env.image_size=32",
            "env.max_episode_steps=5",
            encoders,
            "bc_steps=3",
            "batch_size=16",
            "eval_episodes=1",
            "eval_num_envs=1",
            "holdout=0.34",
            f"run_dir={tmp_path}",
            "progress=false",
        ]
    )
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "results.json").read_text())
    assert [r["encoder"] for r in summary["results"]] == ["small-cnn", "vit"]
    assert summary["train_episodes"] == 2 and summary["test_episodes"] == 1
    for row in summary["results"]:
        assert np.isfinite(row["probe_r2/object position"]) and 0 <= row["bc_success"] <= 1
    assert "| small-cnn | 16 |" in (tmp_path / "table.md").read_text()
    assert (tmp_path / "encoders.png").stat().st_size > 1000
