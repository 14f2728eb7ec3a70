"""Plugins: a policy defined outside the package trains with `embodied train`, evaluates with `embodied eval` and
reloads, through an installed package's entry point or a ``plugins=[module]`` override."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent / "plugin_fixture"


def embodied(args, env, timeout=300):
    return subprocess.run([sys.executable, "-m", "embodied.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)  # fmt: skip


def embodied_together(*commands, timeout=300) -> list[subprocess.CompletedProcess]:
    """Independent ``(args, env)`` commands run side by side (each is mostly imports: one core apiece)."""
    procs = [subprocess.Popen([sys.executable, "-m", "embodied.cli", *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for args, env in commands]  # fmt: skip
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The fixture package installed (pip, no network) into a folder the subprocesses put on their path."""
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    run = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(FIXTURE)],
        capture_output=True, text=True, timeout=300, cwd=build,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert list(target.glob("embodied_tiny_plugin-*.dist-info/entry_points.txt"))
    return target


def test_an_installed_plugin_policy_trains_evaluates_and_reloads(installed, image_store, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(installed)}
    common = [f"dataset={image_store}", "env.image_size=32", "steps=3", "batch_size=8", "progress=false"]
    train = embodied(["train", "policy=tiny_mlp", f"run_dir={tmp_path / 'run'}", *common], env)
    assert train.returncode == 0, train.stderr[-3000:]
    checkpoint = tmp_path / "run" / "checkpoints" / "last"
    saved = (checkpoint / "config.yaml").read_text()
    assert "name: tiny_mlp" in saved
    evaluation, wide, helped, bare = embodied_together(
        (["eval", f"checkpoint={checkpoint}", "episodes=1", "max_episode_steps=4", "videos=0",
          f"run_dir={tmp_path / 'eval'}", "progress=false"], env),
        # the plugin's own YAML preset, found through its CONFIG_PATH
        (["train", "policy=tiny_mlp_wide", f"run_dir={tmp_path / 'wide'}", *common], env),
        (["train", "policy=tiny_mlp", "--help"], env),
        # without the plugin, the checkpoint's policy is unknown and the error says how to load it
        (["eval", f"checkpoint={checkpoint}", "episodes=1", f"run_dir={tmp_path / 'bare'}"],
         {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}),
    )  # fmt: skip
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    result = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert result["episodes"] == 1 and result["per_episode"][0]["length"] == 4
    assert result["env"]["obs_mode"] == "state"  # the plugin policy reads no camera: nothing rendered
    assert wide.returncode == 0, wide.stderr[-3000:]
    assert "width: 64" in (tmp_path / "wide" / "checkpoints" / "last" / "config.yaml").read_text()
    assert "policy.width=32" in helped.stdout and "hidden width" in helped.stdout
    assert bare.returncode == 1 and "unknown policy 'tiny_mlp'" in bare.stderr and "plugins=[module]" in bare.stderr


def test_a_plugin_module_named_in_the_config_is_saved_and_reloaded(image_store, tmp_path):
    """No entry point (the module is only on the path): ``plugins=[...]`` loads it, the run's config records it,
    and `embodied eval` loads it again from the checkpoint."""
    env = {**os.environ, "PYTHONPATH": str(FIXTURE)}
    args = ["train", "plugins=[embodied_tiny_plugin]", "policy=tiny_mlp", f"dataset={image_store}",
            "env.image_size=32", "steps=2", "batch_size=8", "progress=false",
            f"run_dir={tmp_path / 'run'}"]  # fmt: skip
    train = embodied(args, env)
    assert train.returncode == 0, train.stderr[-3000:]
    checkpoint = tmp_path / "run" / "checkpoints" / "last"
    assert "embodied_tiny_plugin" in (checkpoint / "config.yaml").read_text()
    evaluation, missing = embodied_together(
        (["eval", f"checkpoint={checkpoint}", "episodes=1", "max_episode_steps=3", "videos=0",
          f"run_dir={tmp_path / 'eval'}", "progress=false"], env),
        (["train", "plugins=[no_such_plugin_module]", f"dataset={image_store}"], env),
    )  # fmt: skip
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    assert missing.returncode == 1
    assert "embodied plugin module no_such_plugin_module failed to load" in missing.stderr
