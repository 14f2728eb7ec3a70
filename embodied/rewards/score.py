"""`embodied reward score checkpoint=DIR dataset=STORE`: a learned reward's per-step rewards for every episode of a
store, written next to it, with a plot of the reward curves and, when the store records the hidden preference
cost, how well the reward agrees with it (Spearman correlations).

Output (default ``<store>.rewards/<method>-<checkpoint hash>/``)::

    rewards.npz      rewards (n_steps,) float32, every step of every episode in store order (the reward of the
                     matched frames, linearly interpolated between them), and episode_ends
    summary.json     the checkpoint, per-episode returns, and the correlations with -preference_cost
    reward_curves.png   reward over time per episode, coloured by the hidden cost (or by success)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from embodied.configs.checks import at_least
from embodied.features import PREFERENCE_COST


@dataclass
class ScoreConfig:
    """What `embodied reward score` does."""

    checkpoint: str | None = None  # a reward checkpoint (`embodied reward align`'s output)
    dataset: str | None = None  # the store whose episodes get rewards
    out: str | None = None  # default <store>.rewards/<method>-<checkpoint hash>
    batch_size: int = 32  # episodes per reward call
    device: str = "auto"
    progress: bool = True
    plugins: list[str] = field(default_factory=list)

    CHECKS: ClassVar = {"batch_size": at_least(1)}


def default_out(dataset: str | Path, checkpoint: str | Path, method: str) -> Path:
    """``<store>.rewards/<method>-<hash of the checkpoint's manifest>``."""
    import hashlib

    manifest = Path(checkpoint) / "checksums.json"
    digest = hashlib.sha256(manifest.read_bytes() if manifest.exists() else str(checkpoint).encode()).hexdigest()[:8]
    dataset = Path(dataset)
    return dataset.parent / f"{dataset.name}.rewards" / f"{method}-{digest}"


def score(job: ScoreConfig) -> Path:
    """Scores every episode; returns the output directory."""
    from embodied.datasets.store import EpisodeStore
    from embodied.rewards.checkpoint import load_reward
    from embodied.rewards.queries import reward_correlations, store_step_rewards
    from embodied.runtime import resolve_device

    if not job.checkpoint or not job.dataset:
        raise ValueError("embodied reward score needs checkpoint=REWARD_DIR and dataset=STORE")
    model, info = load_reward(job.checkpoint, resolve_device(job.device))
    store = EpisodeStore(job.dataset)
    camera = info["camera"]
    if camera not in store.features:
        raise ValueError(f"{job.dataset} has no {camera!r}, the camera this reward was learned on")
    if tuple(store.features[camera].shape) != tuple(info["image_shape"]):
        raise ValueError(f"{job.dataset}: {camera} is {store.features[camera].shape}, the reward reads "
                         f"{tuple(info['image_shape'])}")  # fmt: skip
    steps, bank, rewards = store_step_rewards(model, store, camera, job.batch_size, job.progress)
    per_step = np.concatenate(steps).astype(np.float32)
    ends = store.episode_ends
    starts = np.concatenate([[0], ends[:-1]])
    out = Path(job.out) if job.out else default_out(job.dataset, job.checkpoint, model.config.method)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "rewards.npz", rewards=per_step, episode_ends=ends)
    returns = [float(per_step[s:e].sum()) for s, e in zip(starts, ends)]
    summary = {"checkpoint": str(Path(job.checkpoint).resolve()), "dataset": str(Path(job.dataset).resolve()),
               "method": model.config.method, "episodes": int(store.n_episodes), "returns": returns}  # fmt: skip
    costs = None
    if PREFERENCE_COST in store.features:
        from embodied.rewards.person import episode_costs

        costs = episode_costs(store)
        summary.update(reward_correlations(rewards, bank, PREFERENCE_COST))
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    plot_reward_curves(per_step, ends, costs, store.episode_info()["success"], out / "reward_curves.png",
                       f"{model.config.method} reward on {Path(job.dataset).name}")  # fmt: skip
    return out


def plot_reward_curves(rewards, ends, costs, success, path: Path, title: str) -> None:
    """Reward over time per episode, coloured by the hidden cost (blue: preferred, red: dispreferred) or by
    success, beside the learned return against the true cost."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    starts = np.concatenate([[0], ends[:-1]])
    fig, axes = plt.subplots(1, 2 if costs is not None else 1, figsize=(11 if costs is not None else 6, 4),
                             squeeze=False)  # fmt: skip
    ax = axes[0, 0]
    if costs is not None:
        scale = (costs - costs.min()) / max(costs.max() - costs.min(), 1e-9)
        colours = plt.cm.coolwarm(scale)
    else:
        colours = ["tab:green" if s else "tab:red" for s in success]
    for e, (s, t) in enumerate(zip(starts, ends)):
        ax.plot(np.arange(t - s), rewards[s:t], color=colours[e], alpha=0.6, lw=1)
    ax.set(xlabel="step", ylabel="learned reward", title=title)
    if costs is not None:
        ax.text(0.01, 0.01, "blue: preferred (low hidden cost), red: dispreferred", transform=ax.transAxes, fontsize=8)
        returns = [rewards[s:t].sum() for s, t in zip(starts, ends)]
        axes[0, 1].scatter(costs, returns, c=colours, s=12)
        axes[0, 1].set(xlabel="true preference cost (episode total)", ylabel="learned return",
                       title="learned return vs the hidden cost")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
