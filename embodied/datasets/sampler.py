"""Training windows over stored episodes: every step is an anchor; each key is read at anchor + offsets.

Offsets that fall outside the anchor's episode are clamped to its first or last step and flagged in an
``is_pad`` mask, as diffusion_policy's SequenceSampler and LeRobot's delta_timestamps do, so windows near
episode edges are still used and the loss can ignore the padded part.

Goal keys (goal-conditioned policies, e.g. ``policy=planner``) are read at one step drawn uniformly from the
anchor's future in its episode (Manipulate by Seeing's "a later frame of the same video"). The draw is seeded by
the batch's own indices, so a resumed run reads exactly the goals an uninterrupted one would, and the same window
gets other goals in other epochs (its batch-mates differ).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def horizon_offsets(n_obs_steps: int, horizon: int) -> tuple[list[int], list[int]]:
    """Offsets for ``n_obs_steps`` observations ending at the anchor and ``horizon`` actions starting at the
    first observed step (Chi et al.'s convention; horizon >= n_obs_steps).

    Returns:
        (observation offsets, action offsets), e.g. n_obs_steps=2, horizon=4 -> ([-1, 0], [-1, 0, 1, 2]).
    """
    if n_obs_steps < 1 or horizon < 1:
        raise ValueError(f"n_obs_steps and horizon must be >= 1, got {n_obs_steps}, {horizon}")
    first = 1 - n_obs_steps
    return list(range(first, 1)), list(range(first, first + horizon))


class WindowSampler:
    """Maps a window index to the store rows of each key and their padding masks.

    Args:
        episode_ends: cumulative episode lengths, (n_episodes,), as stored in ``meta/episode_ends``.
        key_offsets: per key, the step offsets relative to the anchor (negative: past).
        episodes: which episodes to draw windows from (default all), e.g. a train/validation split.
        goal_keys: ``{batch key: store key}`` read at one random future step of the anchor's episode, shape
            (B, 1); ``is_pad`` is true where the anchor is its episode's last step (no future: the anchor itself).
    """

    def __init__(
        self,
        episode_ends: np.ndarray,
        key_offsets: Mapping[str, Sequence[int]],
        episodes: Sequence[int] | None = None,
        goal_keys: Mapping[str, str] | None = None,
    ):
        ends = np.asarray(episode_ends, dtype=np.int64)
        starts = np.concatenate([[0], ends[:-1]])
        chosen = np.arange(len(ends)) if episodes is None else np.asarray(episodes, dtype=np.int64)
        lengths = ends[chosen] - starts[chosen]
        self.anchors = (
            np.concatenate([np.arange(starts[e], ends[e]) for e in chosen]) if len(chosen) else np.zeros(0, np.int64)
        )
        self.anchor_episode = np.repeat(chosen, lengths)
        self._start = np.repeat(starts[chosen], lengths)
        self._end = np.repeat(ends[chosen], lengths)
        self.key_offsets = {key: np.asarray(offsets, dtype=np.int64) for key, offsets in key_offsets.items()}
        self.goal_keys = dict(goal_keys or {})
        clash = set(self.goal_keys) & set(self.key_offsets)
        if clash:
            raise ValueError(f"keys {sorted(clash)} are both windowed and goal keys")

    def source_key(self, key: str) -> str:
        """The store key a batch key is read from (goal keys read another key's rows)."""
        return self.goal_keys.get(key, key)

    def __len__(self) -> int:
        return len(self.anchors)

    def rows_batch(self, indices: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """For windows ``indices`` (B,): ``{key: (store rows (B, T), is_pad (B, T) bool)}``."""
        indices = np.asarray(indices, dtype=np.int64)
        anchor, start, end = self.anchors[indices, None], self._start[indices, None], self._end[indices, None]
        out = {}
        for key, offsets in self.key_offsets.items():
            wanted = anchor + offsets[None, :]
            out[key] = (np.clip(wanted, start, end - 1), (wanted < start) | (wanted >= end))
        if self.goal_keys and len(indices):
            rng = np.random.default_rng(indices)  # the batch's indices: deterministic under resume
            low, high = anchor[:, 0] + 1, end[:, 0] - 1  # the future steps of each anchor's episode
            has_future = low <= high
            span = np.maximum(high - low + 1, 1)
            goal = np.where(has_future, low + np.floor(rng.random(len(indices)) * span).astype(np.int64), anchor[:, 0])
            for key in self.goal_keys:
                out[key] = (goal[:, None], ~has_future[:, None])
        return out

    def rows(self, index: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """For window ``index``: ``{key: (store rows (T,), is_pad (T,) bool)}``."""
        return {key: (rows[0], pad[0]) for key, (rows, pad) in self.rows_batch(np.array([index])).items()}
