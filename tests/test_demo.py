"""`embodied demo` end to end at a tiny scale: collect, train, evaluate, report (the README's first command)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def test_demo_writes_a_report_with_success_loss_curve_and_video(tmp_path):
    command = [
        sys.executable,
        "-m",
        "embodied.cli",
        "demo",
        "episodes=2",
        "steps=12",
        "batch_size=16",
        "eval_episodes=2",
        "videos=1",
        "env.image_size=32",
        "env.max_episode_steps=80",
        f"run_dir={tmp_path}",
    ]
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=400)
    except subprocess.TimeoutExpired as error:  # normally ~40 s: show where it stopped
        pytest.fail(
            f"the demo did not finish in 400 s; stdout: {str(error.stdout)[-2000:]}; "
            f"stderr: {str(error.stderr)[-3000:]}"
        )
    assert run.returncode == 0, run.stderr[-3000:]
    report = (tmp_path / "report.md").read_text()
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    # the report states what the evaluation measured, episode by episode
    assert results["episodes"] == 2 and len(results["per_episode"]) == 2
    wins = sum(e["success"] for e in results["per_episode"])
    assert f"success {wins}/2 = {wins / 2:.2f}" in report
    low, high = results["success_ci95"]
    assert f"(95% CI {low:.2f}-{high:.2f})" in report
    assert all(e["seed"] >= 1_000_000_000 for e in results["per_episode"])  # unseen scenes
    assert "Data: 2 scripted expert episodes" in report and "Training: 12 steps, batch 16" in report
    from embodied.datasets.store import EpisodeStore

    assert EpisodeStore(tmp_path / "dataset.zarr").n_episodes == 2
    rows = [json.loads(line) for line in (tmp_path / "train" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["split"] == "train"][-1] == 12
    assert (tmp_path / "loss.png").stat().st_size > 1000
    assert list((tmp_path / "eval" / "videos").glob("*.mp4"))
    assert (tmp_path / "train" / "checkpoints" / "last" / "model.safetensors").is_file()
    assert "report:" in run.stdout
