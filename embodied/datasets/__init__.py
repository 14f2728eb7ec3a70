"""Open-X-style episode stores in zarr, their statistics, training windows and mixtures.

``WindowDataset`` and ``MixtureDataset`` (torch) live in ``embodied.datasets.window_dataset``, imported on use.
"""

from embodied.datasets.sampler import WindowSampler, horizon_offsets
from embodied.datasets.store import (
    EpisodeStore,
    StorageConfig,
    StoreCorruptError,
    StoreError,
    StoreLockedError,
)

__all__ = [
    "EpisodeStore",
    "StorageConfig",
    "StoreCorruptError",
    "StoreError",
    "StoreLockedError",
    "WindowSampler",
    "horizon_offsets",
]
