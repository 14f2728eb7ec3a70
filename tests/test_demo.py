"""`embodied demo` end to end at a tiny scale: collect, train, evaluate, report (the README's first command)."""

from __future__ import annotations

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
    assert "success" in report and "/2 =" in report
    assert (tmp_path / "loss.png").stat().st_size > 1000
    assert list((tmp_path / "eval" / "videos").glob("*.mp4"))
    assert (tmp_path / "train" / "checkpoints" / "last" / "model.safetensors").is_file()
    assert "report:" in run.stdout
