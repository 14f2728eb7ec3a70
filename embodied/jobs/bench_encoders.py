"""`embodied bench encoders dataset=PATH 'encoders=[{name: cnn}, {name: resnet18}]'`: a "battle of the backbones"
for robots. For each encoder, frozen:

1. a linear probe (ridge regression, closed form) from its pooled features to simulator state (object position,
   gripper opening) fitted on training episodes and scored (R^2) on held-out episodes;
2. behaviour cloning on the cached features, then the success rate of rollouts on unseen scenes.

Writes ``results.json``, ``table.md`` and ``encoders.png`` (a bar chart of probe R^2 and BC success) in the run dir.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from embodied.configs.checks import ConfigValueError, at_least, between


@dataclass
class BenchEncodersConfig:
    """What `embodied bench encoders` does."""

    env: Any = None  # the evaluation env of the BC rollouts (must match the dataset)
    dataset: str | None = None  # an episode store with camera images (required)
    # encoder configs (as under policy.encoder), e.g. [{name: resnet18}, {name: vit, pretrained: DIR}];
    # a `label` key names the row (default: name, or name + pretrained dir)
    encoders: list[Any] = field(default_factory=lambda: [{"name": "cnn"}, {"name": "resnet18"}])
    holdout: float = 0.2  # fraction of episodes held out for the probe and excluded from BC training
    ridge: float = 1e-3  # probe regularisation (relative to the feature scale)
    bc_steps: int = 1000  # 0: probe only
    batch_size: int = 64  # feature caching and BC training
    eval_episodes: int = 20  # BC rollouts per encoder
    eval_num_envs: int = 2  # env processes for the rollouts
    seed: int = 0  # the holdout split, BC's initialisation and batches
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    run_dir: str | None = None  # default outputs/bench_encoders/<time>
    progress: bool = True  # progress bars on the terminal
    plugins: list[str] = field(default_factory=list)  # modules to import first (components of your own)

    CHECKS: ClassVar = {
        "holdout": between(0, 1, high_inclusive=False), "ridge": at_least(0), "bc_steps": at_least(0),
        "batch_size": at_least(1), "eval_episodes": at_least(1), "eval_num_envs": at_least(1),
    }  # fmt: skip


SCHEMA = BenchEncodersConfig


def check(job: BenchEncodersConfig) -> None:
    """The store exists."""
    if not job.dataset or not Path(job.dataset).exists():
        raise ConfigValueError(f"embodied bench encoders needs dataset=PATH of an existing store, got {job.dataset!r}")


def run(job: BenchEncodersConfig, run_dir: Path) -> dict:
    """For each encoder (frozen): cache its features, probe them, train and evaluate BC on them; write the
    results, the table and the chart."""
    from embodied.datasets.mixture import open_dataset
    from embodied.encoders.cache import compute_features, load_features
    from embodied.evaluation.evaluate import evaluate_checkpoint
    from embodied.evaluation.probes import PROBE_TARGETS, episode_split, plot_bars, render_table, ridge_probe
    from embodied.runtime import resolve_device
    from embodied.training.fit_policy import TrainConfig, build_policy, train

    store = open_dataset(job.dataset)
    camera = next((k for k, f in store.features.items() if f.kind == "image"), None)
    if camera is None:
        raise ValueError(f"{job.dataset} has no camera images to benchmark encoders on")
    train_episodes, test_episodes, train_rows, test_rows = episode_split(store, job.holdout, job.seed)
    targets = {name: store.read(key, 0, store.n_steps)[:, part] for name, key, part in PROBE_TARGETS}
    results = []
    for entry in job.encoders:
        entry = dict(entry)
        label = entry.pop("label", None) or entry["name"] + (
            f" ({Path(entry['pretrained']).name})" if entry.get("pretrained") else ""
        )
        print(f"== {label}", flush=True)
        policy_cfg = {"name": "bc", "encoder": {**entry, "train": "frozen"}}
        train_job = TrainConfig(
            env=job.env,
            policy=policy_cfg,
            dataset=job.dataset,
            steps=job.bc_steps,
            batch_size=job.batch_size,
            seed=job.seed,
            device=job.device,
            feature_cache="require",
            progress=job.progress,
        )
        policy = build_policy(train_job, store, resolve_device(job.device))
        start = time.perf_counter()
        compute_features(store, policy.image_encoders(), batch_size=job.batch_size, progress=job.progress)
        features = np.asarray(load_features(store, policy.image_encoders())[camera])
        row = {
            "encoder": label,
            "config": entry,
            "dim": int(features.shape[1]),
            "cache_seconds": round(time.perf_counter() - start, 1),
        }
        for name, values in targets.items():
            row[f"probe_r2/{name}"] = ridge_probe(
                features[train_rows], values[train_rows], features[test_rows], values[test_rows], job.ridge
            )
        if job.bc_steps > 0:
            train_dir = run_dir / "bc" / _slug(label)
            train_job.run_dir = str(train_dir)
            train_job.episodes = train_episodes.tolist()  # held-out episodes stay unseen
            final = train(train_job, train_dir)
            result = evaluate_checkpoint(
                final,
                job.env,
                job.eval_episodes,
                train_dir / "eval",
                job.eval_num_envs,
                job.seed,
                videos=1,
                device=job.device,
                progress=job.progress,
            )
            row.update(bc_success=result["success_rate"], bc_success_ci95=result["success_ci95"])
        results.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "config"}), flush=True)

    summary = {
        "dataset": str(job.dataset),
        "camera": camera,
        "train_episodes": len(train_episodes),
        "test_episodes": len(test_episodes),
        "bc_steps": job.bc_steps,
        "results": results,
    }
    (run_dir / "results.json").write_text(json.dumps(summary, indent=1))
    (run_dir / "table.md").write_text(render_table(summary))
    plot_bars(results, run_dir / "encoders.png")
    print((run_dir / "table.md").read_text())
    print(f"results: {run_dir / 'results.json'}, chart: {run_dir / 'encoders.png'}")
    return summary


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in label)
