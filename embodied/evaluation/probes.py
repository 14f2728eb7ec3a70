"""Linear probes of frozen encoder features to simulator state, and the comparison's report (table and chart)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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


def episode_split(store, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train episodes, test episodes, their step rows): ``holdout`` of the episodes, drawn with ``seed``, held out."""
    rng = np.random.default_rng(seed)
    episodes = rng.permutation(store.n_episodes)
    n_test = max(1, int(round(holdout * store.n_episodes)))
    test_episodes, train_episodes = np.sort(episodes[:n_test]), np.sort(episodes[n_test:])
    ends = store.episode_ends
    starts = np.concatenate([[0], ends[:-1]])

    def rows(which):
        return np.concatenate([np.arange(starts[e], ends[e]) for e in which])

    return train_episodes, test_episodes, rows(train_episodes), rows(test_episodes)


def render_table(summary: dict) -> str:
    """A markdown table: one row per encoder, probe R^2 per target, BC success with its interval."""
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
    """A grouped bar chart of probe R^2 and BC success per encoder, as a PNG."""
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
