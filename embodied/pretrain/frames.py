"""Frames, time-separated pairs and ordered/shuffled triplets drawn from one camera of one or more stores: the
samples self-supervised objectives learn from (episodes give time, which is all these objectives need)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from embodied.features import CAPTION

# Temporal order verification: a triplet (a, b, c) with a < b < c in time is "in order" (label 1); moving the middle
# frame to either end gives a shuffled triplet (label 0), as in Shuffle & Learn and TOV-VICReg.
ORDERED = (0, 1, 2)
SHUFFLED = ((1, 0, 2), (0, 2, 1))


def tov_orders(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) index permutations of time-sorted triplets and their labels (1: in order), half of each."""
    labels = (np.arange(n) % 2 == 0).astype(np.int64)
    rng.shuffle(labels)
    shuffled = np.asarray(SHUFFLED)[rng.integers(0, len(SHUFFLED), n)]
    orders = np.where(labels[:, None] == 1, np.asarray(ORDERED)[None], shuffled)
    return orders, labels


def triplet_times(rng: np.random.Generator, start: np.ndarray, end: np.ndarray, max_gap: int) -> np.ndarray:
    """(n, 3) strictly increasing steps inside [start, end), each gap at most ``max_gap``."""
    n = len(start)
    first_gap = 1 + (rng.random(n) * max_gap).astype(np.int64)
    second_gap = 1 + (rng.random(n) * max_gap).astype(np.int64)
    room = end - start - 1  # >= 2 for episodes of at least 3 steps
    scale = np.minimum(1.0, room / (first_gap + second_gap))
    first_gap = np.maximum(1, np.floor(first_gap * scale)).astype(np.int64)
    second_gap = np.maximum(1, np.minimum(second_gap, room - first_gap)).astype(np.int64)
    first = start + (rng.random(n) * (end - start - first_gap - second_gap)).astype(np.int64)
    return np.stack([first, first + first_gap, first + first_gap + second_gap], 1)


class FrameSampler:
    """Random frames of ``key`` across episodes of several stores (all with that camera at one size)."""

    def __init__(self, stores: Sequence, key: str, min_length: int = 3):
        self.stores = list(stores)
        shapes = set()
        episodes = []  # (store index, first row, end row)
        # each store's visual domain (env name, and its look for env=franka_shifted): language objectives balance
        # batches over domains and pair frames across them
        self.domains = sorted({domain_of(store) for store in self.stores})
        self.store_domain = np.array([self.domains.index(domain_of(store)) for store in self.stores])
        for s, store in enumerate(self.stores):
            if key not in store.features:
                images = [k for k, f in store.features.items() if f.kind == "image"]
                raise KeyError(f"{store.path} has no {key!r}; its cameras: {images}")
            shapes.add(tuple(store.features[key].shape))
            ends = store.episode_ends
            starts = np.concatenate([[0], ends[:-1]])
            episodes += [(s, int(a), int(b)) for a, b in zip(starts, ends) if b - a >= min_length]
            store.preload([key, CAPTION] if CAPTION in store.features else [key])
        if len(shapes) != 1:
            raise ValueError(f"stores disagree on the shape of {key!r}: {sorted(shapes)}")
        if not episodes:
            raise ValueError(f"no episode with at least {min_length} steps")
        self.key = key
        self.episodes = np.asarray(episodes, dtype=np.int64)

    def _read(self, store_index: np.ndarray, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), *self.stores[0].features[self.key].shape), dtype=np.uint8)
        for s in np.unique(store_index):
            mask = store_index == s
            out[mask] = self.stores[int(s)].take(self.key, rows[mask])
        return out

    def _pick(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        chosen = self.episodes[rng.integers(0, len(self.episodes), n)]
        return chosen[:, 0], chosen[:, 1], chosen[:, 2]

    def frames(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` random frames (n, H, W, 3) uint8."""
        store, start, end = self._pick(rng, n)
        return self._read(store, start + (rng.random(n) * (end - start)).astype(np.int64))

    def pairs(self, rng: np.random.Generator, n: int, window: int) -> tuple[np.ndarray, np.ndarray]:
        """Anchors and positives at most ``window`` steps apart (never the same step), same episode."""
        store, start, end = self._pick(rng, n)
        anchor = start + (rng.random(n) * (end - start)).astype(np.int64)
        offset = rng.integers(1, window + 1, n) * rng.choice([-1, 1], n)
        positive = anchor + offset
        positive = np.where((positive < start) | (positive >= end), anchor - offset, positive)
        positive = np.clip(positive, start, end - 1)
        return self._read(store, anchor), self._read(store, positive)

    def triplets(self, rng: np.random.Generator, n: int, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
        """(n, 3, H, W, 3) triplets of one episode each, ordered or shuffled, and their labels (1: in order)."""
        store, start, end = self._pick(rng, n)
        times = triplet_times(rng, start, end, max_gap)
        orders, labels = tov_orders(rng, n)
        times = np.take_along_axis(times, orders, 1)
        frames = self._read(np.repeat(store, 3), times.reshape(-1))
        return frames.reshape(n, 3, *frames.shape[1:]), labels

    # -------------------------------------------------------------- with language (Lang4Sim2Real)
    def captions(self, store_index: np.ndarray, rows: np.ndarray, key: str = CAPTION) -> list[str]:
        """The per-step captions at ``rows`` of the given stores."""
        out = [""] * len(rows)
        for s in np.unique(store_index):
            store = self.stores[int(s)]
            if key not in store.features:
                raise KeyError(f"{store.path} has no {key!r}: collect it in an env whose experts caption stages")
            vocabulary = store.vocabulary(key)
            where = np.flatnonzero(store_index == s)
            for i, code in zip(where, store.take(key, rows[where])):
                out[i] = vocabulary[int(code)]
        return out

    def domain_frames(self, rng: np.random.Generator, domains: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """One random frame of a random episode of each requested domain (``domains``: (n,) indices), and its
        caption."""
        store = np.empty(len(domains), dtype=np.int64)
        rows = np.empty(len(domains), dtype=np.int64)
        episode_domain = self.store_domain[self.episodes[:, 0]]
        for d in np.unique(domains):
            where = np.flatnonzero(domains == d)
            pool = self.episodes[episode_domain == d]
            chosen = pool[rng.integers(0, len(pool), len(where))]
            store[where] = chosen[:, 0]
            rows[where] = chosen[:, 1] + (rng.random(len(where)) * (chosen[:, 2] - chosen[:, 1])).astype(np.int64)
        return self._read(store, rows), self.captions(store, rows)


def domain_of(store) -> str:
    """A store's visual domain: the env it was collected in, with its look (``franka_shifted:warm``, plus the
    ``look`` overrides when there are any); ``franka_shifted`` in its ``source`` look is ``franka``."""
    import json

    config = store.metadata.get("env_config") or {}
    name = str(config.get("name", "unknown"))
    domain, look = config.get("domain"), config.get("look") or {}
    if domain == "source" and not look:
        from embodied.datasets.mixture import physics_of

        return physics_of(name) or name
    label = f"{name}:{domain}" if domain else name
    return f"{label}:{json.dumps(look, sort_keys=True)}" if look else label
