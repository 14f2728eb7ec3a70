"""zarr plumbing of the episode store: the writer lock, the cache of decompressed chunks and the chunk codecs."""

from __future__ import annotations

import fcntl
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from embodied.datasets.errors import StoreLockedError


def acquire_lock(path: Path) -> int:
    """Takes the store's writer lock, an exclusive flock on its directory (released by the OS if the process
    dies), or raises StoreLockedError naming the holder. Returns the directory's file descriptor."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = lock_holder(path)
        os.close(fd)
        raise StoreLockedError(
            f"{path} is being written by {holder}; one writer at a time (wait for it, or write elsewhere)"
        ) from None
    return fd


def lock_holder(path: Path) -> str:
    """``pid N`` of the process holding the flock on ``path`` (from /proc/locks), when the OS tells."""
    try:
        inode = os.stat(path).st_ino
        for line in Path("/proc/locks").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5].rsplit(":", 1)[-1] == str(inode):
                return f"pid {parts[4]}"
    except OSError:
        pass
    return "another process"


def release_lock(fd: int) -> None:
    """Releases what :func:`acquire_lock` took."""
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


class ChunkCache:
    """Least-recently-used decompressed chunks, bounded in bytes."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()

    def get(self, key: tuple) -> np.ndarray | None:
        """The cached chunk (marked most recently used), or None."""
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: tuple, value: np.ndarray) -> None:
        """Caches a chunk, evicting the least recently used ones beyond ``max_bytes``."""
        if value.nbytes > self.max_bytes:
            return
        self._items[key] = value
        self.bytes += value.nbytes
        while self.bytes > self.max_bytes:
            _, evicted = self._items.popitem(last=False)
            self.bytes -= evicted.nbytes


def compressors(storage) -> list:
    """The codec chain of a ``StorageConfig``: zstd, blosc-lz4 or none, then a CRC32C checksum per chunk."""
    from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

    if storage.codec == "zstd":
        codecs = [ZstdCodec(level=storage.level)]
    elif storage.codec == "lz4":
        codecs = [BloscCodec(cname="lz4", clevel=storage.level, shuffle="shuffle")]
    elif storage.codec == "none":
        codecs = []
    else:
        raise ValueError(f"unknown codec {storage.codec!r}: use zstd, lz4 or none")
    return codecs + [Crc32cCodec()]  # a checksum per chunk: damage is an error, never silent wrong data
