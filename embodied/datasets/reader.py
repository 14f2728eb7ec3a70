"""The read path of the episode store: rows of per-step arrays through a cache of decompressed chunks.

zarr 3 costs about a millisecond per array-slice call, so a training window read straight from zarr would cost far
more than the numpy slice it is; reads here go chunk by chunk through ``ChunkCache`` (least recently used, bounded in
bytes), and :meth:`ChunkedReads.preload` fills it with one bulk read per array when the data fits. Every failed read
becomes a :class:`~embodied.datasets.errors.StoreCorruptError` naming the array and chunk.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from embodied.datasets.errors import StoreCorruptError


class ChunkedReads:
    """What :class:`~embodied.datasets.store.EpisodeStore` reads with. The store provides ``path``, ``features``,
    ``n_steps``, ``_cache`` (a ``ChunkCache``) and ``_array(key)`` (the zarr array of a per-step key)."""

    def read(self, key: str, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of a per-step array, committed region only."""
        stop = min(stop, self.n_steps)
        return self.take(key, np.arange(start, stop))

    def take(self, key: str, indices: np.ndarray) -> np.ndarray:
        """Rows at ``indices`` (any order, repeats allowed) of a per-step array, through the chunk cache."""
        array = self._array(key)
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size == 0:
            return np.empty((0, *array.shape[1:]), dtype=array.dtype)
        lo, hi = int(indices.min()), int(indices.max())
        if lo < 0 or hi >= self.n_steps:
            raise IndexError(f"{key}: step index out of range [0, {self.n_steps})")
        chunk = array.chunks[0]
        first, last = lo // chunk, hi // chunk
        if first == last:  # the common case: a window inside one chunk
            return self._chunk(key, first)[indices - first * chunk]
        out = np.empty((len(indices), *array.shape[1:]), dtype=array.dtype)
        chunk_ids = indices // chunk
        for chunk_id in np.unique(chunk_ids):
            rows = chunk_ids == chunk_id
            out[rows] = self._chunk(key, int(chunk_id))[indices[rows] - chunk_id * chunk]
        return out

    def preload(self, keys: Sequence[str] | None = None) -> bool:
        """Reads whole arrays into the chunk cache in one call each, if they fit; returns whether they did.

        One bulk read lets zarr fetch and decompress chunks concurrently, far faster than a first epoch of
        random windows, each paying zarr's per-call overhead.
        """
        keys = list(keys or self.features)
        needed = sum(int(np.prod(self._array(k).shape[1:], dtype=np.int64)) * self._array(k).dtype.itemsize
                     for k in keys) * self.n_steps  # fmt: skip
        if needed > self._cache.max_bytes - self._cache.bytes:
            return False
        for key in keys:
            array = self._array(key)
            chunk = array.chunks[0]
            whole = self._guarded_read(f"data/{key}", lambda a=array: a[: self.n_steps])
            for chunk_id in range(-(-self.n_steps // chunk)):
                self._cache.put((key, chunk_id), whole[chunk_id * chunk : (chunk_id + 1) * chunk])
        return True

    def _chunk(self, key: str, chunk_id: int) -> np.ndarray:
        cached = self._cache.get((key, chunk_id))
        if cached is None:
            cached = self._load_chunk(key, chunk_id)
            self._cache.put((key, chunk_id), cached)
        return cached

    def _load_chunk(self, key: str, chunk_id: int) -> np.ndarray:
        array = self._array(key)
        size = array.chunks[0]
        start, stop = chunk_id * size, min((chunk_id + 1) * size, self.n_steps)
        return self._guarded_read(f"data/{key} chunk {chunk_id}", lambda: array[start:stop])

    def _guarded_read(self, what: str, read):
        try:
            return read()
        except Exception as error:
            raise StoreCorruptError(f"{self.path}: {what} cannot be read: {type(error).__name__}: {error}") from error
