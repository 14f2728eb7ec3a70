"""`embodied bench encoders`: a "battle of the backbones" for robots. For each encoder, frozen:

1. a linear probe (ridge regression, closed form) from its pooled features to simulator state (object position,
   gripper opening) fitted on training episodes and scored (R^2) on held-out episodes;
2. behaviour cloning on the cached features (`embodied cache-features` + `embodied train`), then the success rate
   of rollouts on unseen scenes.

Writes ``results.json``, ``table.md`` and ``encoders.png`` (a bar chart of probe R^2 and BC success) in the run dir.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from embodied.config_checks import at_least, between


@dataclass
class BenchEncodersConfig:
    env: Any = None
    dataset: str | None = None  # an episode store with camera images (required)
    # encoder configs (as under policy.encoder), e.g. [{name: resnet18}, {name: vit, pretrained: DIR}];
    # a `label` key names the row (default: name, or name + pretrained dir)
    encoders: list[Any] = field(default_factory=lambda: [{"name": "cnn"}, {"name": "resnet18"}])
    holdout: float = 0.2  # fraction of episodes held out for the probe and excluded from BC training
    ridge: float = 1e-3  # probe regularisation (relative to the feature scale)
    bc_steps: int = 1000  # 0: probe only
    batch_size: int = 64
    eval_episodes: int = 20
    eval_num_envs: int = 2
    seed: int = 0
    device: str = "auto"
    run_dir: str | None = None
    progress: bool = True

    CHECKS: ClassVar = {
        "holdout": between(0, 1, high_inclusive=False), "ridge": at_least(0), "bc_steps": at_least(0),
        "batch_size": at_least(1), "eval_episodes": at_least(1), "eval_num_envs": at_least(1),
    }  # fmt: skip


# simulator-state targets: (name, feature key, slice of its trailing dimension)
PROBE_TARGETS = (("object position", "state", slice(0, 3)), ("gripper opening", "proprio", slice(7, 9)))


def ridge_probe(train_x, train_y, test_x, test_y, ridge: float) -> float:
    """R^2 on held-out rows of a ridge regression (standardised features, closed form)."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    a, b = (train_x - mean) / std, (test_x - mean) / std
    a = np.concatenate([a, np.ones((len(a), 1))], 1)
    b = np.concatenate([b, np.ones((len(b), 1))], 1)
    weights = np.linalg.solve(a.T @ a + ridge * len(a) * np.eye(a.shape[1]), a.T @ train_y)
    residual = ((b @ weights - test_y) ** 2).sum()
    total = ((test_y - test_y.mean(0)) ** 2).sum()
    return float(1 - residual / max(total, 1e-12))


def bench_encoders(job: BenchEncodersConfig, run_dir: Path) -> dict:
    from embodied.encoders.cache import compute_features, load_features
    from embodied.evaluate import evaluate_checkpoint
    from embodied.train import TrainConfig, build_policy, open_dataset, train
    from embodied.training_utils import resolve_device

    store = open_dataset(job.dataset)
    camera = next((k for k, f in store.features.items() if f.kind == "image"), None)
    if camera is None:
        raise ValueError(f"{job.dataset} has no camera images to benchmark encoders on")
    rng = np.random.default_rng(job.seed)
    episodes = rng.permutation(store.n_episodes)
    n_test = max(1, int(round(job.holdout * store.n_episodes)))
    test_episodes, train_episodes = np.sort(episodes[:n_test]), np.sort(episodes[n_test:])
    ends = store.episode_ends
    starts = np.concatenate([[0], ends[:-1]])

    def rows(which):
        return np.concatenate([np.arange(starts[e], ends[e]) for e in which])

    train_rows, test_rows = rows(train_episodes), rows(test_episodes)
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
    return summary


def render_table(summary: dict) -> str:
    names = [name for name, _, _ in PROBE_TARGETS]
    header = "| encoder | dim | " + " | ".join(f"probe R^2: {n}" for n in names) + " | BC success | 95% CI |"
    lines = [header, "|" + "---|" * (4 + len(names))]
    for row in summary["results"]:
        probes = " | ".join(f"{row[f'probe_r2/{n}']:.3f}" for n in names)
        success = f"{row['bc_success']:.2f}" if "bc_success" in row else "-"
        ci = "{:.2f}-{:.2f}".format(*row["bc_success_ci95"]) if "bc_success_ci95" in row else "-"
        lines.append(f"| {row['encoder']} | {row['dim']} | {probes} | {success} | {ci} |")
    return "\n".join(lines) + "\n"


def plot_bars(results: list[dict], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [k for k in results[0] if k.startswith("probe_r2/")] + (
        ["bc_success"] if "bc_success" in results[0] else []
    )
    figure, axis = plt.subplots(figsize=(max(6, 1.6 * len(results)), 3.8), dpi=100)
    width = 0.8 / len(metrics)
    for m, metric in enumerate(metrics):
        values = [max(row.get(metric, 0.0), 0.0) for row in results]
        axis.bar(np.arange(len(results)) + m * width, values, width, label=metric.replace("probe_r2/", "R^2 "))
    axis.set_xticks(np.arange(len(results)) + width * (len(metrics) - 1) / 2)
    axis.set_xticklabels([row["encoder"] for row in results], rotation=15, ha="right")
    axis.set_ylim(0, 1)
    axis.legend(fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)
    return out


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in label)
