"""Distributed training under torchrun on the CPU (gloo): 2 processes at global batch B train exactly as 1 process
at batch B, a killed 2-process run resumes exactly (on 2 or on 1 process), FSDP shards the VLA and is refused for
policies that cannot shard."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from embodied.cli import main

BC = [
    "env=franka", "env.task=lift", "env.obs_mode=image", "env.image_size=32", "policy=bc", "policy.horizon=1",
    "policy.n_action_steps=1", "policy.encoder.name=cnn", "policy.encoder.dim=16", "policy.encoder.random_shift=0",
    "policy.hidden_dims=[32]", "steps=6", "batch_size=8", "log_every=1", "checkpoint_every=2", "progress=false",
    "ema.enabled=false",
]  # fmt: skip
TINY_VLA = [
    "env=franka", "env.task=lift", "env.obs_mode=image", "env.image_size=32", "policy=openvla_small",
    "policy.encoder.channels=[8,8,8]", "policy.encoder.strides=[2,2,2]", "policy.encoder.dim=16",
    "+policy.lm.model.hidden_size=64", "+policy.lm.model.intermediate_size=128",
    "+policy.lm.model.num_hidden_layers=2", "+policy.lm.model.num_attention_heads=2",
    "+policy.lm.model.num_key_value_heads=2", "steps=4", "batch_size=8", "log_every=1", "checkpoint_every=2",
    "progress=false", "ema.enabled=false",
]  # fmt: skip


def torchrun(nproc: int, args: list[str], env: dict | None = None, **popen) -> subprocess.Popen:
    """``torchrun --standalone --nproc_per_node=N -m embodied.cli ...`` in its own process group."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "embodied.cli", *args]  # fmt: skip
    return subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **popen)  # fmt: skip


def finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def processes_naming(path: Path) -> list[int]:
    """Live processes whose command line mentions ``path``."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(path) in (entry / "cmdline").read_bytes().decode(errors="replace"):
                if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                    pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def records(run_dir: Path) -> dict[int, dict]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r for r in lines if r.get("split") == "train"}


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "checkpoints" / "last" / "model.safetensors")


@pytest.fixture(scope="module")
def runs(image_store, tmp_path_factory):
    """One uninterrupted run on 1 process and one on 2 (global batch 8 both; the 2 processes accumulate 2
    micro-batches of 2 each, synchronising on the second only)."""
    root = tmp_path_factory.mktemp("distributed")
    args = ["train", *BC, f"dataset={image_store}"]
    two = torchrun(2, [*args, "micro_batch_size=2", f"run_dir={root / 'two'}"])
    assert main([*args, f"run_dir={root / 'one'}"]) == 0  # beside the launch: both are small
    out = finish(two)
    return root, args, out


def test_two_processes_train_like_one_at_the_same_global_batch(runs):
    root, _, out = runs
    one, two = records(root / "one"), records(root / "two")
    assert sorted(one) == sorted(two) == [1, 2, 3, 4, 5, 6]
    for step in one:
        assert two[step]["loss"] == pytest.approx(one[step]["loss"], rel=1e-5)
        assert two[step]["grad_norm"] == pytest.approx(one[step]["grad_norm"], rel=1e-4)
    a, b = weights(root / "one"), weights(root / "two")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    assert out.count("run directory:") == 1 and out.count("checkpoint:") == 1  # rank 0 alone reports
    assert (root / "two" / "metrics.jsonl").read_text().count('"step": 6') == 1  # and logs
    state = torch.load(root / "two" / "checkpoints" / "last" / "training_state.pt", weights_only=False)
    assert state["world_size"] == 2 and len(state["rng"]) == 2  # every rank's RNG state


def test_a_killed_two_process_run_resumes_exactly(image_store, tmp_path):
    # with random image shifts: each rank draws its own, so resuming exactly needs every rank's RNG state back
    args = [
        "train",
        *(a for a in BC if "random_shift" not in a),
        f"dataset={image_store}",
        "policy.encoder.random_shift=2",
    ]
    reference = torchrun(2, [*args, f"run_dir={tmp_path / 'reference'}"])
    run_dir = tmp_path / "killed"
    proc = torchrun(2, [*args, f"run_dir={run_dir}"], env={"EMBODIED_TRAIN_PAUSE_AFTER": "4"})
    checkpoint = run_dir / "checkpoints" / "step_0000004" / "training_state.pt"
    deadline = time.monotonic() + 300
    while not (checkpoint.is_file() and (run_dir / "checkpoints" / "last").resolve().name == "step_0000004"):
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "the run never wrote its step-4 checkpoint"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)  # the torchrun agent, with no chance to save or to stop its workers
    deadline = time.monotonic() + 60
    while processes_naming(run_dir):  # the ranks (sessions of their own) follow their agent
        assert time.monotonic() < deadline, "ranks outlived their killed torchrun agent"
        time.sleep(0.2)
    proc.communicate(timeout=60)
    assert not (run_dir / "checkpoints" / "step_0000006").exists()
    resumed_on_one = tmp_path / "on_one"
    subprocess.run(["cp", "-a", str(run_dir), str(resumed_on_one)], check=True)

    on_one = torchrun(1, [*args, f"run_dir={resumed_on_one}", "resume=true"])  # 2-rank checkpoint, 1 process
    out = finish(torchrun(2, [*args, f"run_dir={run_dir}", "resume=true"]))
    assert "resuming from step 4" in out
    finish(reference)
    expected, resumed = records(tmp_path / "reference"), records(run_dir)
    for step in (5, 6):
        assert resumed[step]["loss"] == expected[step]["loss"]  # the same batches, shifts and reduction: exact
    for key, value in weights(tmp_path / "reference").items():
        assert torch.equal(weights(run_dir)[key], value), key

    out = finish(on_one)
    assert "saved on 2 processes, resumed on 1" in out and "resuming from step 4" in out
    assert sorted(records(resumed_on_one)) == [1, 2, 3, 4, 5, 6]


def test_fsdp_shards_the_vla_and_its_checkpoint_loads_anywhere(image_store, tmp_path):
    from embodied.policies import load_policy

    args = ["train", *TINY_VLA, f"dataset={image_store}", "distributed.strategy=fsdp"]
    out = finish(torchrun(2, [*args, f"run_dir={tmp_path / 'fsdp'}"]))
    assert out.count("checkpoint:") == 1
    losses = [r["loss"] for r in records(tmp_path / "fsdp").values()]
    assert len(losses) == 4 and losses[-1] < losses[0]
    policy = load_policy(tmp_path / "fsdp" / "checkpoints" / "last")  # consolidated: one process, no FSDP
    assert len(policy.fsdp_units()) == 2  # the tiny Llama's two decoder layers
    state = torch.load(tmp_path / "fsdp" / "checkpoints" / "last" / "training_state.pt", weights_only=False)
    assert "fsdp_full_state" in state["optimizer"]
    assert not any("_fsdp" in key or key.startswith("policy.") for key in state["model"])
    # resumed on one rank (still sharded, over one process) from the 2-rank step-2 checkpoint
    (tmp_path / "fsdp" / "checkpoints" / "last").unlink()
    (tmp_path / "fsdp" / "checkpoints" / "last").symlink_to("step_0000002")
    out = finish(torchrun(1, [*args, f"run_dir={tmp_path / 'fsdp'}", "resume=true"]))
    assert "saved on 2 processes, resumed on 1" in out and "resuming from step 2" in out
    with pytest.raises(Exception, match="strategy=fsdp"):  # its optimiser state is not a plain one
        from embodied.training.checkpoint import load_training_state
        from embodied.training.distributed import Context
        from embodied.training.parallel import Parallel

        state = load_training_state(tmp_path / "fsdp" / "checkpoints" / "last", {})
        Parallel(policy, "none", Context()).load_optimizer_state(torch.optim.AdamW(policy.parameters()),
                                                                  state["optimizer"])  # fmt: skip


def test_ddp_trains_a_qlora_vla(image_store, tmp_path):
    """A 4-bit base with LoRA adapters under DDP: the probe finds the VLA's unused encoder weights, so DDP looks for
    unused parameters every step, which needs the non-reentrant activation checkpointing QLoRA is prepared with."""
    from embodied.policies import load_policy
    from tests.policies.helpers import save_pretrained_lm

    lm = save_pretrained_lm(tmp_path / "lm", {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                                              "num_attention_heads": 2, "num_key_value_heads": 2})  # fmt: skip
    args = ["train", *(a for a in TINY_VLA if "lm.model" not in a), f"dataset={image_store}", "steps=2",
            f"policy.lm.pretrained={lm}", "policy.lm.train=lora", "policy.lm.quantization=4bit",
            f"run_dir={tmp_path / 'run'}"]  # fmt: skip
    out = finish(torchrun(2, args))
    assert "finding unused parameters each step" in out
    assert all(math.isfinite(r["loss"]) for r in records(tmp_path / "run").values())
    policy = load_policy(tmp_path / "run" / "checkpoints" / "last")
    assert "Linear4bit" in {type(m).__name__ for m in policy.lm.modules()}


def test_fsdp_is_refused_for_policies_that_replicate_and_quantised_lms(image_store, tmp_path, capsys):
    code = main(["train", *BC, f"dataset={image_store}", "distributed.strategy=fsdp", f"run_dir={tmp_path}"])
    assert code == 2
    err = capsys.readouterr().err
    assert "policy=bc does not support it" in err and "distributed.strategy=ddp" in err
    vla = ["train", *TINY_VLA, f"dataset={image_store}", "distributed.strategy=fsdp", "policy.lm.pretrained=/lm",
           "policy.lm.train=lora", "policy.lm.quantization=4bit", f"run_dir={tmp_path / 'vla'}"]  # fmt: skip
    assert main(vla) == 2
    assert "FSDP cannot shard; use distributed.strategy=ddp" in capsys.readouterr().err


def test_commands_that_run_in_one_process_refuse_torchrun(tmp_path):
    proc = torchrun(1, ["pretrain", f"run_dir={tmp_path}"])
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0 and "runs in one process; start it without torchrun" in out


def test_strategies_that_cannot_work_are_refused():
    from embodied.training.distributed import resolve_strategy

    assert resolve_strategy("auto", 1, False) == "none" and resolve_strategy("auto", 2, True) == "ddp"
    assert resolve_strategy("ddp", 1, False) == "none"  # one process: nothing to synchronise
    with pytest.raises(ValueError, match="unsynchronised replicas"):
        resolve_strategy("none", 2, True)
    with pytest.raises(ValueError, match="needs a process group: launch with torchrun"):
        resolve_strategy("fsdp", 1, False)
