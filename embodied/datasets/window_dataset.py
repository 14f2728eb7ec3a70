"""torch Datasets of training windows from one store, and weighted mixtures of several stores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, WeightedRandomSampler

from embodied.datasets.sampler import WindowSampler
from embodied.datasets.store import EpisodeStore


class WindowDataset(Dataset):
    """Windows of an episode store as tensors.

    Each item: ``{key: (T, ...) tensor}`` for every key in ``key_offsets`` (images stay uint8: encoders own
    their preprocessing), ``{key}_is_pad: (T,) bool``, ``language_instruction`` (str, at the anchor step),
    ``episode_index`` and ``dataset`` (the store's name, its directory's stem: which statistics apply).

    Args:
        store: an :class:`EpisodeStore` or its path (opened read-only).
        key_offsets: per key, step offsets relative to the anchor (see :func:`horizon_offsets`).
        episodes: restrict to these episode indices (e.g. a train split).
        successful_only: skip episodes whose success flag is False.
        preload: read the windowed keys into memory up front when they fit the store's chunk cache.
        extra_arrays: per-step arrays aligned with the store's rows (e.g. cached encoder features) read like
            store keys: ``{key: (n_steps, ...) array}``.
        goal_keys: ``{batch key: store key}`` read at a random future step of each window's episode, (1, ...)
            per item (see :class:`WindowSampler`).
    """

    def __init__(
        self,
        store: EpisodeStore | str | Path,
        key_offsets: Mapping[str, Sequence[int]],
        episodes: Sequence[int] | None = None,
        successful_only: bool = False,
        preload: bool = True,
        extra_arrays: Mapping[str, np.ndarray] | None = None,
        goal_keys: Mapping[str, str] | None = None,
    ):
        self.store = store if isinstance(store, EpisodeStore) else EpisodeStore(store)
        self.extra = dict(extra_arrays or {})
        for key, array in self.extra.items():
            if len(array) != self.store.n_steps:
                raise ValueError(f"extra array {key!r} has {len(array)} rows, the store {self.store.n_steps}")
        goal_keys = dict(goal_keys or {})
        missing = (set(key_offsets) | set(goal_keys.values())) - set(self.store.features) - set(self.extra)
        if missing:
            raise KeyError(f"{self.store.path} has no {sorted(missing)}; features: {sorted(self.store.features)}")
        if episodes is None:
            episodes = np.arange(self.store.n_episodes)
        if successful_only:
            success = self.store.episode_info()["success"]
            episodes = [e for e in episodes if success[e]]
        self.sampler = WindowSampler(self.store.episode_ends, key_offsets, episodes, goal_keys)
        self._instructions = self.store.instructions
        self.name = self.store.name
        if preload:
            windowed = {*key_offsets, *goal_keys.values()} - set(self.extra)
            self.store.preload([*sorted(windowed), "language_instruction"])

    def __len__(self) -> int:
        return len(self.sampler)

    @property
    def episodes(self) -> np.ndarray:
        """The store episodes this dataset draws windows from (its selection), sorted."""
        return np.unique(self.sampler.anchor_episode)

    def __getitem__(self, index: int | Sequence[int]) -> dict:
        if not isinstance(index, (int, np.integer)):
            return self.get_batch(index)
        batch = self.get_batch([index])
        item = {key: value[0] for key, value in batch.items()}
        item["episode_index"] = int(item["episode_index"])
        return item

    def _take(self, key: str, rows: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.extra[key][rows]) if key in self.extra else self.store.take(key, rows)

    def get_batch(self, indices: Sequence[int]) -> dict:
        """Windows ``indices`` as one batch, read with one call per key: the fields of ``__getitem__`` stacked
        (``language_instruction`` a list). ``dataset[list_of_indices]`` calls this, so a DataLoader can draw
        whole batches: ``DataLoader(dataset, sampler=<a batch sampler>, batch_size=None)``."""
        indices = np.asarray(indices, dtype=np.int64)
        batch: dict = {}
        for key, (rows, is_pad) in self.sampler.rows_batch(indices).items():
            values = self._take(self.sampler.source_key(key), rows.reshape(-1))
            batch[key] = torch.from_numpy(values.reshape(*rows.shape, *values.shape[1:]))
            batch[f"{key}_is_pad"] = torch.from_numpy(is_pad)
        codes = self.store.take("language_instruction", self.sampler.anchors[indices])
        batch["language_instruction"] = [self._instructions[int(c)] for c in codes]
        batch["episode_index"] = torch.from_numpy(self.sampler.anchor_episode[indices])
        batch["dataset"] = [self.name] * len(indices)
        return batch


class MixtureDataset(ConcatDataset):
    """Several window datasets drawn with given weights (each dataset's share of samples, not of steps).

    Use :meth:`sampler` with a DataLoader: ``DataLoader(mix, batch_size=..., sampler=mix.sampler(n))``, or draw
    whole batches by index lists like a :class:`WindowDataset` (``mix[list_of_indices]``; one read per key and
    store).
    """

    def __init__(self, datasets: Sequence[Dataset], weights: Sequence[float] | None = None):
        super().__init__(datasets)
        weights = np.ones(len(datasets)) if weights is None else np.asarray(weights, dtype=np.float64)
        if len(weights) != len(datasets) or np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError(f"need one non-negative weight per dataset with a positive sum, got {list(weights)}")
        if any(len(d) == 0 for d in datasets):
            raise ValueError("every dataset in a mixture needs at least one window")
        self.weights = weights / weights.sum()

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return super().__getitem__(index)
        return self.get_batch(index)

    def get_batch(self, indices: Sequence[int]) -> dict:
        """Windows ``indices`` (over the concatenation) as one batch, grouped by store (order within the batch
        follows the stores)."""
        indices = np.asarray(indices, dtype=np.int64)
        bounds = np.asarray(self.cumulative_sizes)
        which = np.searchsorted(bounds, indices, side="right")
        parts = []
        for d in np.unique(which):
            local = indices[which == d] - (bounds[d - 1] if d > 0 else 0)
            parts.append(self.datasets[d].get_batch(local))
        out = {}
        for key, first in parts[0].items():
            values = [p[key] for p in parts]
            out[key] = torch.cat(values) if torch.is_tensor(first) else [v for part in values for v in part]
        return out

    def sample_weights(self) -> torch.Tensor:
        """A weight per window such that dataset d is drawn with probability weights[d]."""
        return torch.cat(
            [torch.full((len(d),), w / len(d), dtype=torch.float64) for d, w in zip(self.datasets, self.weights)]
        )

    def sampler(self, num_samples: int, generator: torch.Generator | None = None) -> WeightedRandomSampler:
        """A sampler drawing ``num_samples`` windows with replacement by the mixture's weights."""
        return WeightedRandomSampler(self.sample_weights(), num_samples, replacement=True, generator=generator)
