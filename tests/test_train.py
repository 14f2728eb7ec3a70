"""Training: the loss goes down, resumption is exact, a NaN loss stops the run, bad input fails clearly."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
from safetensors.torch import load_file

from embodied.cli import main
from embodied.envs.franka.config import FrankaConfig
from embodied.policies import POLICIES
from embodied.policies.bc import BCConfig, BCPolicy
from embodied.train import EMAConfig, TrainConfig, TrainingDiverged, train
from embodied.training_utils import StepBatchSampler


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
    assert "checkpoints/last" in str(error.value)
    assert (tmp_path / "checkpoints" / "last").resolve().name == "step_0000002"


def test_cli_train_without_or_with_missing_dataset(capsys, tmp_path):
    assert main(["train"]) == 2
    assert "dataset=PATH" in capsys.readouterr().err
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
