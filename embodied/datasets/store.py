"""Open-X-style episodes in a zarr v3 store, written crash-safely and read through a chunk cache.

Layout (one directory):

    zarr.json                  root attributes under "embodied": schema, dataset metadata, statistics and
                               the commit record {n_episodes, n_steps}
    data/<key>                 per-step arrays, episodes concatenated along axis 0 (chunked in time):
                               every observation key (images/<camera>, proprio, state), action, reward,
                               discount, is_first, is_last, is_terminal, language_instruction (index into
                               the "instructions" list)
    meta/<key>                 per-episode arrays: episode_ends, length, success, seed, task (index into
                               "tasks"), env_config (index into "env_configs", JSON strings)

One writer at a time: the appender holds an exclusive flock on the store's directory itself (released by the
OS if the process dies), so no lock file sits inside the zarr hierarchy for plain zarr readers to trip over.

Crash safety: an episode's arrays are written first, and the episode becomes visible only when the root
attributes, which hold the commit record, are replaced; zarr's local store replaces every file atomically
(write to a temporary file, then rename). Anything past the commit record is ignored by readers and cut
off by the next writer. Every chunk carries a CRC32C checksum, so a damaged chunk fails loudly on read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embodied.datasets._zarr import ChunkCache, acquire_lock, release_lock
from embodied.datasets.errors import StoreCorruptError, StoreError, StoreLockedError  # noqa: F401 (re-exported)
from embodied.datasets.layout import (  # noqa: F401 (StorageConfig: re-exported)
    ATTRS_KEY,
    EPISODE_FIELDS,
    SCHEMA_VERSION,
    STATS_KINDS,
    StorageConfig,
    check_stats,
    encode_language,
    episode_record,
    validate_layout,
    write_empty,
)
from embodied.datasets.reader import ChunkedReads
from embodied.datasets.stats import RunningStats, public
from embodied.features import Feature


class EpisodeStore(ChunkedReads):
    """Reader and (with ``mode="a"``) appender of one episode store.

    Use :meth:`create` for a new store, :meth:`open` for an existing one, or :meth:`open_or_create` to resume.
    Reads go through a per-array cache of decompressed chunks (``cache_bytes`` in total), so training
    windows cost a numpy slice once a chunk has been read.
    """

    def __init__(
        self, path: str | Path, mode: str = "r", cache_bytes: int = 4 << 30, check_stats: bool = True, _lock=None
    ):
        import zarr

        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' or 'a', got {mode!r}")
        self.path = Path(path)
        self.mode = mode
        self._lock_fd = _lock
        if not (self.path / "zarr.json").exists():
            self.close()
            raise StoreError(f"no episode store at {self.path} (zarr.json not found)")
        if mode == "a" and self._lock_fd is None:
            self._lock_fd = acquire_lock(self.path)
        self._arrays: dict[str, Any] = {}
        self._cache = ChunkCache(cache_bytes)
        try:
            try:
                self.root = zarr.open_group(str(self.path), mode="r+" if mode == "a" else "r")
            except Exception as error:
                raise StoreCorruptError(f"{self.path}/zarr.json: root metadata unreadable ({error})") from error
            self._load_attrs()
            validate_layout(self)
            if check_stats:
                self.check_stats()
            if mode == "a":
                self._prepare_append()
        except Exception:
            self.close()
            raise

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(
        cls,
        path: str | Path,
        features: Sequence[Feature],
        metadata: dict | None = None,
        storage: StorageConfig | None = None,
    ) -> EpisodeStore:
        """Creates an empty store for ``features`` (the env's observations and action) and opens it to append."""
        path = Path(path)
        if (path / "zarr.json").exists():
            raise StoreError(f"{path} already holds a store; open it with mode='a' to append")
        # a `.writer.lock` file is what earlier versions left behind: the only thing allowed in a new store's folder
        if path.exists() and (not path.is_dir() or any(p.name != ".writer.lock" for p in path.iterdir())):
            raise StoreError(f"{path} exists and is not an episode store; refusing to write into it")
        path.mkdir(parents=True, exist_ok=True)
        lock = acquire_lock(path)  # held from before the first file until the new store is closed
        try:
            if (path / "zarr.json").exists():
                raise StoreError(f"{path} was created by another writer just now; open it with mode='a'")
            write_empty(path, features, metadata, storage or StorageConfig())
        except BaseException:
            release_lock(lock)
            raise
        return cls(path, mode="a", _lock=lock)

    @classmethod
    def open(cls, path: str | Path, mode: str = "r", **kwargs) -> EpisodeStore:
        """Opens an existing store (``mode="a"``: to append, taking the writer lock)."""
        return cls(path, mode=mode, **kwargs)

    @classmethod
    def open_or_create(
        cls, path: str | Path, features: Sequence[Feature], metadata: dict | None = None,
        storage: StorageConfig | None = None,
    ) -> EpisodeStore:  # fmt: skip
        """Opens an existing store to append (checking its features match) or creates a new one."""
        if not (Path(path) / "zarr.json").exists():
            return cls.create(path, features, metadata, storage)
        store = cls(path, mode="a")
        try:
            store.check_features(features)
        except StoreError:
            store.close()
            raise
        return store

    def check_features(self, features: Sequence[Feature]) -> None:
        """Raises StoreError unless every one of ``features`` is stored here with the same shape and dtype."""
        for feature in features:
            if self.features.get(feature.key) != feature:
                raise StoreError(
                    f"{self.path} was written with {self.features.get(feature.key)} but this run produces "
                    f"{feature}; write to a new store (out=...)"
                )

    # ------------------------------------------------------------------ description
    @property
    def name(self) -> str:
        """The store's name (its directory's stem, ``data/lift.zarr`` -> ``lift``): its key in a mixture, e.g. of
        its statistics in checkpoints (``policy.unnorm_key``)."""
        return self.path.stem

    @property
    def n_episodes(self) -> int:
        """Committed episodes."""
        return int(self._attrs["commit"]["n_episodes"])

    @property
    def n_steps(self) -> int:
        """Committed steps, all episodes together."""
        return int(self._attrs["commit"]["n_steps"])

    @property
    def features(self) -> dict[str, Feature]:
        """Per-step features by key (the env's observations and action, plus the RLDS fields)."""
        return {d["key"]: Feature.from_dict(d) for d in self._attrs["features"]}

    @property
    def metadata(self) -> dict:
        """Dataset-level facts the env recorded (robot, control frequency, cameras, ...)."""
        return dict(self._attrs["metadata"])

    @property
    def instructions(self) -> list[str]:
        """The distinct language instructions, in order of first appearance."""
        return list(self._attrs["instructions"])

    def vocabulary(self, key: str) -> list[str]:
        """The distinct strings of a per-step language feature other than the instruction (stage captions), in
        order of first appearance: its stored codes index this list."""
        if key == "language_instruction":
            return self.instructions
        if key not in self.features or self.features[key].kind != "language":
            raise KeyError(f"{self.path} has no language feature {key!r}")
        return list(self._attrs.get("vocabularies", {}).get(key, []))

    @property
    def stats(self) -> dict[str, dict]:
        """Per numeric feature: count, mean, std, min, max, q01, q99 (lists over the trailing dimension)."""
        return {key: public(value) for key, value in self._attrs["stats"].items()}

    @property
    def episode_ends(self) -> np.ndarray:
        """(n_episodes,) the exclusive end row of each episode."""
        return self._meta("episode_ends")

    def episode_info(self) -> dict[str, np.ndarray | list]:
        """Per-episode metadata: length, success, seed, task (names) and env_config (dicts)."""
        tasks, configs = self._attrs["tasks"], self._attrs["env_configs"]
        return {
            "length": self._meta("length"),
            "success": self._meta("success"),
            "seed": self._meta("seed"),
            "task": [tasks[i] for i in self._meta("task")],
            "env_config": [json.loads(configs[i]) for i in self._meta("env_config")],
        }

    # ------------------------------------------------------------------ reading
    def episode(self, index: int, keys: Sequence[str] | None = None) -> dict[str, Any]:
        """All steps of one episode: ``{key: (T, ...) array}``; language_instruction decoded to strings."""
        if not 0 <= index < self.n_episodes:
            raise IndexError(f"episode {index} out of range: the store has {self.n_episodes}")
        ends = self.episode_ends
        start, stop = (int(ends[index - 1]) if index else 0), int(ends[index])
        out = {key: self.read(key, start, stop) for key in (keys or self.features)}
        for key in [k for k in out if self.features[k].kind == "language"]:
            vocabulary = self.vocabulary(key)
            out[key] = [vocabulary[i] for i in out[key]]
        return out

    def check_stats(self) -> None:
        """Raises StoreCorruptError if the saved statistics are malformed or not finite (checked on open)."""
        check_stats(self)

    @property
    def raw_stats(self) -> dict[str, dict]:
        """The saved statistics with their bookkeeping fields (m2, histograms)."""
        return self._attrs["stats"]

    def recompute_stats(self) -> None:
        """Rebuilds every feature's statistics from the committed episodes and commits them (mode "a")."""
        if self.mode != "a":
            raise StoreError(f"{self.path} is open read-only")
        self._running = {key: self._fresh_stats(f) for key, f in self.features.items() if f.kind in STATS_KINDS}
        ends = self.episode_ends
        for index in range(self.n_episodes):
            start, stop = (int(ends[index - 1]) if index else 0), int(ends[index])
            for key, stats in self._running.items():
                stats.update(self.read(key, start, stop))
        self._attrs["stats"] = {key: stats.to_dict() for key, stats in self._running.items()}
        self._write_attrs()
        self.check_stats()

    def verify(self) -> None:
        """Reads every committed chunk of every array and checks the statistics; raises StoreCorruptError at the
        first bad one."""
        self.check_stats()
        for key in self.features:
            array = self._array(key)
            for chunk_id in range(-(-self.n_steps // array.chunks[0])):
                self._load_chunk(key, chunk_id)

    # ------------------------------------------------------------------ writing
    def append_episode(
        self,
        steps: dict[str, np.ndarray],
        *,
        language_instruction: str,
        terminated: bool,
        success: bool,
        seed: int,
        task: str,
        env_config: dict | None = None,
    ) -> int:
        """Appends one finished episode and commits it; returns its index.

        Args:
            steps: per-step arrays with a leading time axis T: every observation feature, ``action`` and
                ``reward``; ``discount`` and the RLDS flags are filled in here.
            language_instruction: the episode's instruction, stored per step as in Open-X.
            terminated: the episode ended in a terminal state (sets ``is_terminal`` and a zero discount on
                the last step); False for a time limit.
        """
        if self.mode != "a":
            raise StoreError(f"{self.path} is open read-only")
        instruction = self._intern("instructions", language_instruction)
        steps = encode_language(steps, self.features, self._attrs.setdefault("vocabularies", {}))
        record = episode_record(steps, self.features, instruction, terminated)
        length = len(record["action"])

        start, stop = self.n_steps, self.n_steps + length
        for key, value in record.items():  # 1. data past the commit record: invisible until step 3
            array = self._array(key)
            array.resize((stop, *array.shape[1:]))
            array[start:stop] = value
        index = self.n_episodes
        episode_values = {
            "episode_ends": stop, "length": length, "success": bool(success), "seed": int(seed),
            "task": self._intern("tasks", task),
            "env_config": self._intern("env_configs", json.dumps(env_config or {}, sort_keys=True)),
        }  # fmt: skip
        for key, value in episode_values.items():  # 2. per-episode metadata, also past the commit record
            array = self._open_array(f"meta/{key}")
            array.resize((index + 1,))
            array[index] = value
        for key, stats in self._running.items():
            stats.update(record[key])
        self._attrs["stats"] = {key: stats.to_dict() for key, stats in self._running.items()}
        self._attrs["commit"] = {"n_episodes": index + 1, "n_steps": stop}
        self._write_attrs()  # 3. the commit: one atomic file replace
        self._meta_cache.clear()
        return index

    def close(self) -> None:
        """Releases the writer lock (a reader holds none)."""
        if self._lock_fd is not None:
            release_lock(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> EpisodeStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        """Pickled for DataLoader workers: read-only, reopened lazily with an empty cache."""
        if self.mode != "r":
            raise StoreError("only a read-only store can be sent to worker processes")
        return {"path": self.path, "cache_bytes": self._cache.max_bytes}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], mode="r", cache_bytes=state["cache_bytes"])

    def __repr__(self) -> str:
        return f"EpisodeStore({str(self.path)!r}, episodes={self.n_episodes}, steps={self.n_steps})"

    # ------------------------------------------------------------------ internals
    def _load_attrs(self) -> None:
        attrs = self.root.attrs.asdict().get(ATTRS_KEY)
        if attrs is None:
            raise StoreCorruptError(f"{self.path}: zarr group without '{ATTRS_KEY}' attributes: not an episode store")
        if attrs.get("schema_version") != SCHEMA_VERSION:
            raise StoreError(f"{self.path}: schema version {attrs.get('schema_version')}, expected {SCHEMA_VERSION}")
        for field in ("features", "commit", "instructions", "tasks", "env_configs", "stats"):
            if field not in attrs:
                raise StoreCorruptError(f"{self.path}/zarr.json: attribute '{field}' missing")
        self._attrs = attrs
        self._meta_cache: dict[str, np.ndarray] = {}

    def _write_attrs(self) -> None:
        self.root.attrs.update({ATTRS_KEY: self._attrs})

    def _array(self, key: str):
        if key not in self._arrays:
            if key not in self.features:
                raise KeyError(f"{key!r} is not a feature of {self.path}; features: {sorted(self.features)}")
            self._arrays[key] = self._open_array(f"data/{key}")
        return self._arrays[key]

    def _open_array(self, name: str):
        import zarr

        # write_empty_chunks is a run-time setting, not stored metadata: a writer sets it on every open, so
        # all-zero chunks are written too and a missing chunk file always means damage.
        with zarr.config.set({"array.write_empty_chunks": self.mode == "a"}):
            return self.root[name]

    def _meta(self, key: str) -> np.ndarray:
        if key not in self._meta_cache:
            array = self.root[f"meta/{key}"]
            self._meta_cache[key] = self._guarded_read(f"meta/{key}", lambda: array[: self.n_episodes])
        return self._meta_cache[key]

    def _prepare_append(self) -> None:
        """Cuts off whatever a killed writer left past the commit record and restores running statistics."""
        for key in self.features:
            array = self._array(key)
            if array.shape[0] != self.n_steps:
                array.resize((self.n_steps, *array.shape[1:]))
        for key in EPISODE_FIELDS:
            array = self._open_array(f"meta/{key}")
            if array.shape[0] != self.n_episodes:
                array.resize((self.n_episodes,))
        self._running: dict[str, RunningStats] = {}
        for key, feature in self.features.items():
            if feature.kind not in STATS_KINDS:
                continue
            is_image = feature.kind == "image"
            saved = self._attrs["stats"].get(key)
            if saved is None:
                self._running[key] = self._fresh_stats(feature)
            else:
                rows = None if is_image else self.read(key, 0, self.n_steps)
                self._running[key] = RunningStats.from_dict(saved, is_image, rows)

    @staticmethod
    def _fresh_stats(feature: Feature) -> RunningStats:
        return RunningStats(feature.kind == "image", feature.shape[-1] if feature.shape else 1)

    def _intern(self, field: str, value: str) -> int:
        vocabulary = self._attrs[field]
        if value not in vocabulary:
            vocabulary.append(value)
        return vocabulary.index(value)
