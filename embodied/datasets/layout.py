"""The store's on-disk layout: the schema constants, creating an empty store, and checking a store against its
commit record and its statistics (see :mod:`embodied.datasets.store` for the layout itself)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from embodied.configs.checks import at_least, one_of
from embodied.datasets._zarr import compressors
from embodied.datasets.errors import StoreCorruptError
from embodied.datasets.stats import stats_problem
from embodied.features import Feature

SCHEMA_VERSION = 1
ATTRS_KEY = "embodied"
# Step fields every store has, beside the env's own observation and action features (RLDS conventions).
STEP_FEATURES = (
    Feature("reward", (), "float32", "reward"),
    Feature("discount", (), "float32", "reward"),
    Feature("is_first", (), "bool", "flag"),
    Feature("is_last", (), "bool", "flag"),
    Feature("is_terminal", (), "bool", "flag"),
    Feature("language_instruction", (), "int32", "language"),
)
EPISODE_FIELDS = {"episode_ends": "int64", "length": "int64", "success": "bool", "seed": "int64",
                  "task": "int32", "env_config": "int32"}  # fmt: skip
STATS_KINDS = ("image", "proprio", "state", "action", "reward")


@dataclass
class StorageConfig:
    """How per-step arrays are chunked and compressed (defaults chosen by benchmarks/store_throughput.py)."""

    chunk_steps: int = 64  # steps per chunk along time
    codec: str = "zstd"  # "zstd", "lz4" (blosc) or "none"
    level: int = 3  # compression level

    CHECKS: ClassVar = {"chunk_steps": at_least(1), "codec": one_of("zstd", "lz4", "none"), "level": at_least(0)}


def write_empty(path: Path, features: Sequence[Feature], metadata: dict | None, storage: StorageConfig) -> None:
    """The arrays and root attributes of an empty store for ``features`` (plus the RLDS step fields)."""
    import zarr

    features = list(features) + [f for f in STEP_FEATURES if f.key not in {g.key for g in features}]
    root = zarr.open_group(str(path), mode="a")  # "w" would delete the lock file we hold
    for feature in features:
        root.create_array(
            f"data/{feature.key}",
            shape=(0, *feature.shape),
            chunks=(storage.chunk_steps, *feature.shape),
            dtype=feature.dtype,
            compressors=compressors(storage),
            # Every chunk is written, even all-zero ones: a missing chunk file then always means damage.
            config={"write_empty_chunks": True},
        )
    for key, dtype in EPISODE_FIELDS.items():
        root.create_array(
            f"meta/{key}", shape=(0,), chunks=(1024,), dtype=dtype,
            compressors=compressors(storage), config={"write_empty_chunks": True},
        )  # fmt: skip
    attrs = {
        "schema_version": SCHEMA_VERSION,
        "features": [f.to_dict() for f in features],
        "metadata": metadata or {},
        "storage": vars(storage),
        "instructions": [],
        "tasks": [],
        "env_configs": [],
        "stats": {},
        "commit": {"n_episodes": 0, "n_steps": 0},
    }
    root.attrs.update({ATTRS_KEY: attrs})


def validate_layout(store) -> None:
    """Raises StoreCorruptError unless every array covers the commit record with the schema's shape and dtype and
    every committed chunk file exists (cheap: no chunk is read)."""
    n_episodes, n_steps = store.n_episodes, store.n_steps
    groups = {"data": (store.features, n_steps), "meta": (EPISODE_FIELDS, n_episodes)}
    for group, (keys, committed) in groups.items():
        for key in keys:
            name = f"{group}/{key}"
            try:
                array = store.root[name]
            except Exception as error:
                raise StoreCorruptError(f"{store.path}: array {name} is missing or unreadable ({error})") from error
            if array.shape[0] < committed:
                raise StoreCorruptError(
                    f"{store.path}: array {name} holds {array.shape[0]} rows but {committed} are committed "
                    "(truncated store)"
                )
            if group == "data":
                feature = store.features[key]
                if tuple(array.shape[1:]) != feature.shape or np.dtype(array.dtype) != np.dtype(feature.dtype):
                    raise StoreCorruptError(
                        f"{store.path}: array {name} is {array.dtype}{tuple(array.shape[1:])}, "
                        f"schema says {feature.dtype}{feature.shape}"
                    )
            for chunk_id in range(-(-committed // array.chunks[0])):
                coords = (chunk_id,) + (0,) * (array.ndim - 1)
                chunk_file = store.path / name / array.metadata.encode_chunk_key(coords)
                if not chunk_file.exists():
                    raise StoreCorruptError(f"{store.path}: array {name} is missing chunk {chunk_id} ({chunk_file})")
    ends = store.episode_ends
    if n_episodes and (int(ends[-1]) != n_steps or np.any(np.diff(ends) <= 0) or ends[0] <= 0):
        raise StoreCorruptError(f"{store.path}: meta/episode_ends disagrees with the commit record ({n_steps} steps)")


def check_stats(store) -> None:
    """Raises StoreCorruptError if the saved statistics are malformed or not finite (checked on open)."""
    for key, stats in store.raw_stats.items():
        feature = store.features.get(key)
        if feature is None:
            raise StoreCorruptError(f"{store.path}: statistics for {key!r}, which is not a feature")
        dim = feature.shape[-1] if feature.shape else 1
        problem = stats_problem(key, stats, dim, feature.kind == "image")
        if problem:
            raise StoreCorruptError(
                f"{store.path}: {problem}; the episodes may be intact: rebuild the statistics with "
                f"`embodied data recompute-stats {store.path}`"
            )


def episode_record(steps: dict, features: dict[str, Feature], instruction: int, terminated: bool) -> dict:
    """The per-step arrays of one episode as the store keeps them: ``steps`` (observations, action, reward) plus
    the RLDS fields (discount, is_first/is_last/is_terminal, the instruction's index), each checked against its
    feature's shape and cast to its dtype."""
    length = len(steps["action"])
    if length == 0:
        raise ValueError("an episode needs at least one step")
    record = dict(steps)
    record.setdefault("discount", np.ones(length, np.float32))
    record["is_first"] = np.arange(length) == 0
    record["is_last"] = np.arange(length) == length - 1
    record["is_terminal"] = record["is_last"] & bool(terminated)
    if terminated:
        record["discount"] = np.asarray(record["discount"], np.float32).copy()
        record["discount"][-1] = 0.0
    record["language_instruction"] = np.full(length, instruction)
    missing = set(features) - set(record)
    unknown = set(record) - set(features)
    if missing or unknown:
        raise ValueError(f"episode keys do not match the store: missing {sorted(missing)}, unknown {sorted(unknown)}")
    for key, feature in features.items():
        value = np.asarray(record[key])
        if value.shape != (length, *feature.shape):
            raise ValueError(f"{key}: expected shape {(length, *feature.shape)}, got {value.shape}")
        record[key] = value.astype(feature.dtype, copy=False)
    return record


def encode_language(steps: dict, features: dict[str, Feature], vocabularies: dict[str, list[str]]) -> dict:
    """``steps`` with every per-step language feature but the instruction (stage captions: strings) replaced by
    codes into its vocabulary, which grows in place (it is saved with the commit record)."""
    steps = dict(steps)
    for key, feature in features.items():
        if feature.kind != "language" or key == "language_instruction" or key not in steps:
            continue
        vocabulary = vocabularies.setdefault(key, [])
        codes = []
        for text in np.asarray(steps[key]).reshape(-1).tolist():
            if not isinstance(text, str):
                raise ValueError(f"{key}: per-step strings expected, got {type(text).__name__}")
            if text not in vocabulary:
                vocabulary.append(text)
            codes.append(vocabulary.index(text))
        steps[key] = np.asarray(codes, dtype=np.int32)
    return steps
