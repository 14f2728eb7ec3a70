"""The `embodied` command line: Hydra errors for bad input, collect + data info end to end."""

from __future__ import annotations

import subprocess
import sys

from embodied.cli import main


def test_unknown_key_is_a_clear_error(capsys):
    assert main(["collect", "no_such_key=1"]) == 2
    err = capsys.readouterr().err
    assert "no_such_key" in err and "Traceback" not in err


def test_unknown_group_choice_lists_the_options(capsys):
    assert main(["collect", "env=nope"]) == 2
    err = capsys.readouterr().err
    assert "env/nope" in err and "franka" in err


def test_wrong_type_and_unknown_env_field(capsys):
    assert main(["collect", "episodes=many"]) == 2
    assert "episodes" in capsys.readouterr().err
    assert main(["collect", "env.no_field=3"]) == 2
    assert "no_field" in capsys.readouterr().err


def test_unknown_command(capsys):
    assert main(["juggle"]) == 2
    assert "unknown command 'juggle'" in capsys.readouterr().err


def test_collect_then_data_info(tmp_path):
    out = tmp_path / "lift.zarr"
    run = subprocess.run(
        [sys.executable, "-m", "embodied.cli", "collect", "env.task=lift", "episodes=2", f"out={out}",
         "env.image_size=32", "num_workers=2", f"run_dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "run directory:" in run.stdout and (tmp_path / "run" / "config.yaml").exists()
    info = subprocess.run(
        [sys.executable, "-m", "embodied.cli", "data", "info", str(out), "--verify"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert info.returncode == 0, info.stderr
    assert "episodes: 2" in info.stdout and "success rate: 100.0%" in info.stdout
    assert "images/agentview" in info.stdout and "q99" in info.stdout
    more = subprocess.run(
        [sys.executable, "-m", "embodied.cli", "collect", "episodes=3", f"out={out}", "env.image_size=48",
         "num_workers=0", f"run_dir={tmp_path / 'run2'}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert more.returncode == 1 and "was written with" in more.stderr and "images/agentview" in more.stderr
    assert (
        "episodes: 2"
        in subprocess.run(
            [sys.executable, "-m", "embodied.cli", "data", "info", str(out)], capture_output=True, text=True
        ).stdout
    )
    missing = subprocess.run(
        [sys.executable, "-m", "embodied.cli", "data", "info", str(tmp_path / "none.zarr")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 1 and "no episode store" in missing.stderr


def test_user_config_folder_adds_choices(tmp_path, monkeypatch):
    from embodied.cli import compose

    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "franka_wrist.yaml").write_text(
        "defaults:\n  - franka\n  - _self_\ntask: stack\ncameras: [agentview, robot0_eye_in_hand]\n"
    )
    monkeypatch.setenv("EMBODIED_CONFIG_PATH", str(tmp_path))
    cfg = compose("collect", ["env=franka_wrist", "episodes=3"])
    assert cfg.env.name == "franka" and cfg.env.task == "stack" and cfg.env.image_size == 84
    assert list(cfg.env.cameras) == ["agentview", "robot0_eye_in_hand"] and cfg.episodes == 3
