"""Training: the loss goes down, resumption is exact, a NaN loss stops the run, bad input fails clearly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest
import torch
from safetensors.torch import load_file

from embodied.cli import main
from embodied.envs.franka.config import FrankaConfig
from embodied.policies import POLICIES
from embodied.policies.bc import BCConfig, BCPolicy
from embodied.training import memory
from embodied.training.distributed import Context
from embodied.training.fit_policy import TrainConfig, build_policy, train
from embodied.training.optim import EMAConfig
from embodied.training.parallel import Parallel
from embodied.training.sampler import StepBatchSampler
from embodied.training.trainer import TrainingDiverged, accumulate_gradients


def job_for(store, run_dir, **overrides) -> TrainConfig:
    policy = overrides.pop("policy", BCConfig(encoder={"name": "cnn", "dim": 32}, hidden_dims=[64]))
    job = TrainConfig(
        env=FrankaConfig(image_size=32),
        policy=policy,
        dataset=str(store),
        batch_size=16,
        run_dir=str(run_dir),
        log_every=1,
        progress=False,
        **overrides,
    )
    job.optim.warmup_steps = 2
    return job


def losses(run_dir) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["split"] == "train"]


def test_loss_decreases_and_checkpoints_are_written(image_store, tmp_path):
    job = job_for(image_store, tmp_path, steps=60, checkpoint_every=30)
    job.optim.lr = 3e-3
    final = train(job, tmp_path)
    values = losses(tmp_path)
    assert len(values) == 60
    assert sum(values[-10:]) / 10 < 0.8 * sum(values[:10]) / 10
    assert final.name == "step_0000060" and (tmp_path / "checkpoints" / "step_0000030").is_dir()
    assert (tmp_path / "checkpoints" / "last").resolve() == final
    assert any((tmp_path / "tensorboard").iterdir())
    assert torch.load(final / "training_state.pt", weights_only=False)["step"] == 60


def test_interrupted_and_resumed_run_matches_uninterrupted(image_store, tmp_path):
    def make(run_dir):
        return job_for(image_store, run_dir, steps=8, checkpoint_every=100, ema=EMAConfig(enabled=True, decay=0.9))

    full_job, cut_job = make(tmp_path / "full"), make(tmp_path / "cut")
    train(full_job, tmp_path / "full")

    def interrupt(step, metrics):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cut_job, tmp_path / "cut", callbacks=[interrupt])
    saved = tmp_path / "cut" / "checkpoints" / "last"
    assert torch.load(saved / "training_state.pt", weights_only=False)["step"] == 3

    cut_job.resume = True
    seen = []
    train(cut_job, tmp_path / "cut", callbacks=[lambda step, metrics: seen.append((step, metrics["loss"]))])
    assert [s for s, _ in seen] == [4, 5, 6, 7, 8]
    full_losses = losses(tmp_path / "full")
    assert [loss for _, loss in seen] == pytest.approx(full_losses[3:], rel=1e-5)
    for name in ("model.safetensors",):
        a = load_file(tmp_path / "full" / "checkpoints" / "last" / name)
        b = load_file(tmp_path / "cut" / "checkpoints" / "last" / name)
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    state = torch.load(tmp_path / "cut" / "checkpoints" / "last" / "training_state.pt", weights_only=False)
    assert state["step"] == 8


def test_batch_order_depends_only_on_the_step():
    sampler = StepBatchSampler(100, 16, seed=3)
    stream = iter(sampler)
    first = [next(stream) for _ in range(13)]
    resumed = iter(StepBatchSampler(100, 16, seed=3, start_step=9))
    assert next(resumed) == first[9] == sampler.indices(9)
    assert sorted(sum(first[:6], [])) == sorted(set(sum(first[:6], [])))  # no repeats within an epoch


@dataclass
class ExplodingConfig(BCConfig):
    name: str = "exploding_bc"
    explode_at: int = 3


class ExplodingBC(BCPolicy):
    """BC whose loss turns NaN at a chosen call, as a diverging run's would."""

    calls = 0

    def compute_loss(self, batch):
        loss, metrics = super().compute_loss(batch)
        if len(batch["action"]) != 16:  # the memory probe's batches of 2 and 4 are not training steps
            return loss, metrics
        ExplodingBC.calls += 1
        return (loss * float("nan") if ExplodingBC.calls >= self.config.explode_at else loss), metrics


POLICIES.register("exploding_bc", config=ExplodingConfig)(ExplodingBC)


def test_nan_loss_stops_the_run_naming_the_step(image_store, tmp_path):
    ExplodingBC.calls = 0
    job = job_for(
        image_store,
        tmp_path,
        steps=10,
        checkpoint_every=2,
        policy=ExplodingConfig(encoder={"name": "cnn", "dim": 32}, hidden_dims=[64]),
    )
    with pytest.raises(TrainingDiverged, match="at step 3") as error:
        train(job, tmp_path)
    assert "the last good checkpoint is" in str(error.value) and "checkpoints/step_0000002" in str(error.value)
    assert (tmp_path / "checkpoints" / "last").resolve().name == "step_0000002"
    ExplodingBC.calls = 0
    job.policy.explode_at, job.run_dir = 1, str(tmp_path / "first")
    with pytest.raises(TrainingDiverged, match="at step 1.*no checkpoint was written yet"):
        train(job, tmp_path / "first")


def test_cli_train_with_a_missing_dataset(capsys, tmp_path):
    assert main(["train", f"dataset={tmp_path / 'nope.zarr'}"]) == 2
    err = capsys.readouterr().err
    assert "nope.zarr" in err and "does not exist" in err and "Traceback" not in err
    assert main(["train", f"dataset={tmp_path}", "policy.no_such=1"]) == 2
    assert "no_such" in capsys.readouterr().err


def test_env_that_does_not_match_the_dataset_is_refused(image_store, tmp_path):
    job = job_for(image_store, tmp_path, steps=1)
    job.env = FrankaConfig(image_size=84)
    with pytest.raises(ValueError, match="image_size"):
        train(job, tmp_path)


def test_a_finished_run_directory_is_not_overwritten(image_store, tmp_path, capsys):
    train(job_for(image_store, tmp_path, steps=2), tmp_path)
    with pytest.raises(FileExistsError, match="resume=true"):
        train(job_for(image_store, tmp_path, steps=2), tmp_path)
    code = main(
        ["train", f"dataset={image_store}", "env.image_size=32", "steps=2", f"run_dir={tmp_path}", "progress=false"]
    )
    assert code == 1 and "already holds a training run" in capsys.readouterr().err
    assert (
        main(["train", f"dataset={image_store}", "env.image_size=32", "resume=true", f"run_dir={tmp_path / 'empty'}"])
        == 1
    )
    assert "training_state.pt" in capsys.readouterr().err


def test_without_a_dataset_the_default_store_is_collected_once_then_reused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EMBODIED_CACHE", str(tmp_path / "cache"))
    args = ["train", "env.obs_mode=state", "steps=2", "batch_size=8", "progress=false"]
    assert main([*args, f"run_dir={tmp_path / 'a'}"]) == 0
    out = capsys.readouterr().out
    (store,) = (tmp_path / "cache" / "datasets").glob("franka-lift-50-*.zarr")
    assert "collecting the default franka lift store once" in out and str(store) in out
    from embodied.datasets.store import EpisodeStore

    assert EpisodeStore(store).n_episodes == 50
    assert main([*args, f"run_dir={tmp_path / 'b'}"]) == 0
    out = capsys.readouterr().out
    assert "training on the default franka lift store" in out and "collecting" not in out
    saved = (tmp_path / "b" / "checkpoints" / "last" / "config.yaml").read_text()
    assert str(store) in saved  # the checkpoint records which store it was trained on


def test_sigterm_saves_a_checkpoint_like_ctrl_c(image_store, tmp_path):
    """Clusters send SIGTERM before they kill: the run saves the step it reached and resumes from it."""
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "embodied.cli", "train", f"dataset={image_store}", "env.image_size=32",
            "steps=100000", "batch_size=8", "log_every=1", "checkpoint_every=100000", f"run_dir={run_dir}",
            "policy.encoder.dim=16", "policy.hidden_dims=[32]"]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = run_dir / "metrics.jsonl"
    while process.poll() is None and not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        time.sleep(0.05)  # poll until two steps are logged (the run cannot finish 100000 steps first)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err[-2000:]
    assert "SIGTERM" in err and "Traceback" not in err
    saved = torch.load(run_dir / "checkpoints" / "last" / "training_state.pt", weights_only=False)["step"]
    assert saved >= 2
    logged = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert saved == max(logged)  # the checkpoint is the last step taken, not the last periodic one


def test_resume_with_changed_settings_names_the_fields(image_store, tmp_path, capsys):
    assert main(["train", f"dataset={image_store}", "env.image_size=32", "steps=2", "batch_size=8",
                 f"run_dir={tmp_path}", "progress=false", "policy.hidden_dims=[32]"]) == 0  # fmt: skip
    code = main(["train", f"dataset={image_store}", "env.image_size=32", "steps=4", "batch_size=8", "resume=true",
                 f"run_dir={tmp_path}", "policy.hidden_dims=[64]", "policy.encoder.dim=16"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert "policy.hidden_dims: [32] in the checkpoint, [64] now" in err
    assert "policy.encoder.dim: 128 in the checkpoint, 16 now" in err
    assert "policy.n_obs_steps" not in err  # only what differs


def test_micro_batches_accumulate_the_whole_batch_gradient(image_store, tmp_path):
    job = job_for(image_store, tmp_path, policy=BCConfig(encoder={"name": "cnn", "dim": 16, "random_shift": 0},
                                                         hidden_dims=[32]))  # fmt: skip
    from embodied.datasets.store import EpisodeStore
    from embodied.datasets.window_dataset import WindowDataset

    store = EpisodeStore(image_store)
    policy = build_policy(job, store)
    dataset = WindowDataset(store, policy.key_offsets())
    unpadded = [i for i in range(len(dataset)) if not dataset[i]["action_is_pad"].any()][:12]
    batch = dataset.get_batch(unpadded)
    grads = []
    for micro in (12, 5):  # one pass; passes of 5, 5 and 2
        policy.zero_grad()
        loss, _ = accumulate_gradients(Parallel(policy, "none", Context()), batch, micro,
                                       torch.autocast("cpu", enabled=False))  # fmt: skip
        grads.append((loss, [p.grad.clone() for p in policy.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-5, atol=1e-6)
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_memory_estimate_measures_activations_and_plans_micro_batches(image_store, tmp_path):
    from embodied.datasets.store import EpisodeStore
    from embodied.datasets.window_dataset import WindowDataset

    store = EpisodeStore(image_store)
    estimates = {}
    for size in (32, 64):  # the encoder's input size: activations grow with the pixels, weights do not
        job = job_for(image_store, tmp_path, policy=BCConfig(encoder={"name": "cnn", "dim": 16, "image_size": size},
                                                             hidden_dims=[32]))  # fmt: skip
        policy = build_policy(job, store)
        dataset = WindowDataset(store, policy.key_offsets())
        before = {k: v.clone() for k, v in policy.state_dict().items()}
        rng = torch.get_rng_state()
        estimates[size] = memory.estimate(
            policy, lambda n, d=dataset: d.get_batch(list(range(n))), False, torch.autocast("cpu", enabled=False)
        )
        assert torch.equal(rng, torch.get_rng_state())  # the probe leaves no trace
        assert all(torch.equal(before[k], v) for k, v in policy.state_dict().items())
    small, large = estimates[32], estimates[64]
    assert small.activations_per_sample > 0 and small.gradients == large.gradients
    assert 3 < large.activations_per_sample / small.activations_per_sample < 5  # 4x the pixels
    assert small.optimizer == 2 * small.gradients  # fp32: two moments per trainable weight

    fits_12 = int(small.needed(12) / memory.HEADROOM) + 1
    plan = memory.plan(small, 64, fits_12, torch.device("cpu"))
    assert plan.micro_batch_size <= 12 and plan.accumulation * plan.micro_batch_size >= 64
    assert "micro-batches" in plan.describe() and "effective batch stays 64" in plan.describe()
    assert memory.plan(small, 64, 10 * fits_12, torch.device("cpu")).accumulation == 1
    with pytest.raises(memory.InsufficientMemory, match="does not fit in memory.*Options"):
        memory.plan(small, 64, int(small.needed(0) / memory.HEADROOM), torch.device("cpu"))


def test_a_mixture_of_one_store_trains_exactly_like_the_store(image_store, tmp_path):
    """The mixture path (merged statistics, MixtureDataset batches, per-dataset statistics) adds nothing of its
    own: a mixture holding a single store gives the same batches and the same losses as the store alone."""
    from embodied.datasets.mixture import training_inputs
    from embodied.datasets.store import EpisodeStore
    from embodied.datasets.window_dataset import MixtureDataset, WindowDataset

    store = EpisodeStore(image_store)
    alone_stats = training_inputs([store], mixture=False)[1]
    mixed_stats = training_inputs([store], mixture=True)[1]
    for key in ("proprio", "action"):
        for name in ("mean", "std", "min", "max", "q01", "q99"):
            assert mixed_stats[key][name] == pytest.approx(alone_stats[key][name], rel=1e-9, abs=1e-12)
    offsets = {"proprio": [0], "action": list(range(8))}
    alone = WindowDataset(store, offsets)
    mixed = MixtureDataset([WindowDataset(store, offsets)], [len(alone)])
    indices = [5, 0, 17, 3]
    for key, value in alone.get_batch(indices).items():
        other = mixed.get_batch(indices)[key]
        assert torch.equal(value, other) if torch.is_tensor(value) else value == other

    policy = BCConfig(encoder={"name": "cnn", "dim": 16}, hidden_dims=[32])
    train(job_for(image_store, tmp_path / "alone", steps=6, policy=policy), tmp_path / "alone")
    mixture_job = job_for(image_store, tmp_path / "mixed", steps=6, policy=BCConfig(**vars(policy)))
    mixture_job.dataset = [str(image_store)]
    train(mixture_job, tmp_path / "mixed")
    assert losses(tmp_path / "mixed") == pytest.approx(losses(tmp_path / "alone"), rel=1e-5)


def test_compiled_loss_trains_like_eager(image_store, tmp_path):
    """``compile=true`` (torch.compile of the loss through the wrapper DDP and FSDP also use): the same losses as
    eager up to kernel rounding, no graph-break warnings from the metrics' ``.item()``, a checkpoint that loads."""
    from torch._dynamo.utils import counters

    from embodied.policies import load_policy

    # no random shifts: compiled code draws its random numbers with its own generator
    policy = BCConfig(encoder={"name": "cnn", "dim": 16, "random_shift": 0}, hidden_dims=[32])
    counters.clear()
    train(job_for(image_store, tmp_path / "eager", steps=4, policy=policy), tmp_path / "eager")
    final = train(job_for(image_store, tmp_path / "compiled", steps=4, policy=BCConfig(**vars(policy)), compile=True),
                  tmp_path / "compiled")  # fmt: skip
    assert losses(tmp_path / "compiled") == pytest.approx(losses(tmp_path / "eager"), rel=1e-4)
    assert counters["stats"]["calls_captured"] > 0 and not counters["graph_break"]  # compiled, in one graph
    assert not any(key.startswith("_orig_mod") for key in load_file(final / "model.safetensors"))
    load_policy(final)
