"""A human-readable description of an episode store (`embodied data info PATH`)."""

from __future__ import annotations

import numpy as np

from embodied.datasets.preferences import read_preferences
from embodied.datasets.store import EpisodeStore


def describe_store(path: str, verify: bool = False) -> str:
    """Schema, episode count, success rate and statistics of the store at ``path``.

    With ``verify``, every committed chunk is read and checksummed first.
    """
    with EpisodeStore(path) as store:
        if verify:
            store.verify()
        info = store.episode_info()
        meta = store.metadata
        lines = [f"store: {store.path}"]
        for key in ("robot", "env", "control_frequency", "cameras", "action_space"):
            if key in meta:
                lines.append(f"{key}: {meta[key]}")
        lengths = info["length"]
        success = info["success"]
        lines.append(f"episodes: {store.n_episodes}   steps: {store.n_steps}")
        if store.n_episodes:
            lines.append(
                f"episode length: mean {lengths.mean():.1f}, min {lengths.min()}, max {lengths.max()}   "
                f"success rate: {success.mean():.1%} ({int(success.sum())}/{len(success)})"
            )
            tasks, counts = np.unique(info["task"], return_counts=True)
            lines.append("tasks: " + ", ".join(f"{t} ({c})" for t, c in zip(tasks, counts)))
        lines.append("instructions: " + "; ".join(repr(s) for s in store.instructions))
        for key, feature in store.features.items():  # per-step language: the experts' stage captions
            if feature.kind == "language" and key != "language_instruction":
                vocabulary = store.vocabulary(key)
                lines.append(f"{key}: {len(vocabulary)} distinct, e.g. " + "; ".join(repr(s) for s in vocabulary[:3]))
        prefs = read_preferences(path)
        if len(prefs):
            triplets = int((prefs.episodes[:, 2] >= 0).sum())
            ties = int(sum(len(set(r[r >= 0])) < int((r >= 0).sum()) for r in prefs.ranking))
            labellers, counts = np.unique(prefs.labeller, return_counts=True)
            lines.append(f"preferences: {len(prefs)} answers ({triplets} triplets, {len(prefs) - triplets} pairs, "
                         f"{ties} with equally good episodes) by "
                         + ", ".join(f"{prefs.labellers[i]} ({c})" for i, c in zip(labellers, counts)))  # fmt: skip
        if verify:
            lines.append("verified: every committed chunk read and checksummed")
        lines.append("")
        lines.append(f"{'feature':<26}{'kind':<10}{'dtype':<9}{'shape':<14}")
        for feature in store.features.values():
            lines.append(f"{feature.key:<26}{feature.kind:<10}{feature.dtype:<9}{str(feature.shape):<14}")
        lines.append("")
        lines.append("statistics (per element; images per channel):")
        header = f"  {'feature':<24}{'mean':>10}{'std':>10}{'min':>10}{'max':>10}{'q01':>10}{'q99':>10}"
        lines.append(header)
        for key, stats in store.stats.items():
            for i in range(len(stats["mean"])):
                name = key if i == 0 else ""
                values = [stats[s][i] for s in ("mean", "std", "min", "max", "q01", "q99")]
                lines.append(f"  {name:<20}{i:>4}" + "".join(f"{v:>10.4g}" for v in values))
        return "\n".join(lines)
