"""The `embodied` command line: Hydra errors for bad input, collect + data info end to end."""

from __future__ import annotations

import subprocess
import sys

import pytest

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
    from embodied.jobs.config import compose

    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "franka_wrist.yaml").write_text(
        "defaults:\n  - franka\n  - _self_\ntask: stack\ncameras: [agentview, robot0_eye_in_hand]\n"
    )
    monkeypatch.setenv("EMBODIED_CONFIG_PATH", str(tmp_path))
    cfg = compose("collect", ["env=franka_wrist", "episodes=3"])
    assert cfg.env.name == "franka" and cfg.env.task == "stack" and cfg.env.image_size == 84
    assert list(cfg.env.cameras) == ["agentview", "robot0_eye_in_hand"] and cfg.episodes == 3


@pytest.mark.parametrize(
    "args, expected",
    [
        (["train", "steps=-5"], "steps=-5: must be >= 1"),
        (["train", "batch_size=0"], "batch_size=0: must be >= 1"),
        (["train", "optim.lr=0"], "optim.lr=0.0: must be > 0"),
        (["train", "optim.schedule=linear"], "optim.schedule='linear': must be one of cosine, constant"),
        (["train", "ema.decay=1.5"], "ema.decay=1.5: must be in [0, 1)"),
        (["train", "policy.horizon=0"], "policy.horizon=0: must be >= 1"),
        (["collect", "episodes=0"], "episodes=0: must be >= 1"),
        (["collect", "episodes=-2"], "episodes=-2: must be >= 1"),
        (["collect", "storage.codec=gzip"], "storage.codec='gzip': must be one of zstd, lz4, none"),
        (["collect", "env.task=fly"], "env.task='fly': must be one of lift, lift_zone, pick_place_can, stack"),
        (["collect", "env.obs_mode=video"], "env.obs_mode='video': must be one of image, state"),
        (["eval", "episodes=0", "checkpoint=."], "episodes=0: must be >= 1"),
        (["demo", "steps=0"], "steps=0: must be >= 1"),
        (["pretrain", "batch_size=-1"], "batch_size=-1: must be >= 1"),
        (["train", "--cfg", "job"], "unknown option --cfg"),
        (["data", "info", "x.zarr", "--verfy"], "unknown option --verfy"),
        (["data", "inspect", "x.zarr"], "usage: embodied data info PATH"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(capsys, tmp_path, args, expected):
    assert main([*args, f"run_dir={tmp_path}"] if args[0] != "data" else args) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # refused before any work: not even the run directory's config


def test_collect_refuses_an_output_that_cannot_become_a_store_before_collecting(capsys, tmp_path):
    plain = tmp_path / "file"
    plain.write_text("not a store")
    assert main(["collect", f"out={plain}", f"run_dir={tmp_path / 'run'}"]) == 2
    assert "is a file, not an episode store" in capsys.readouterr().err
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    assert main(["collect", f"out={folder}", f"run_dir={tmp_path / 'run'}"]) == 2
    assert "not an episode store" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and plain.read_text() == "not a store"


@pytest.mark.parametrize("command", ["collect", "train", "eval", "demo", "pretrain", "cache-features", "bench", "data"])
def test_help_prints_every_field_with_its_doc(capsys, command):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: embodied {command}")
    if command == "data":
        assert "--verify" in out and "recompute-stats" in out
        return
    if command in ("train", "cache-features"):
        assert "steps=3000" in out and "optimiser steps in all" in out and "[>= 1]" in out
        assert "policy.hidden_dims=" in out and "policy.encoder.train=finetune" in out
        assert "env.image_size=84" in out and "square camera images, pixels" in out
    if command == "collect":
        assert "episodes=100" in out and "storage.codec=zstd" in out and "[one of zstd, lz4, none]" in out


def test_help_reflects_the_other_overrides(capsys):
    assert main(["train", "policy=openvla", "batch_size=4", "--help"]) == 0
    out = capsys.readouterr().out
    assert "batch_size=4" in out and "policy=openvla" in out and "policy.lm.train=auto" in out
    assert "encoder=dinosiglip" in out
