"""A preference table inside an episode store: which episodes a person compared and how they ranked them.

RAPL's queries are triplets of rollout videos (pairs work too); a person ranks them, possibly calling some equally
good. The table lives in the store's zarr hierarchy beside ``data/`` and ``meta/``, so preferences travel, append
and get inspected with the episodes they talk about (episode readers ignore it)::

    preferences/zarr.json         attributes: the commit record {"n": answered queries}, "labellers" (names)
    preferences/episodes          (Q, 3) int64  the episodes shown, in the order shown (-1: unused, for pairs)
    preferences/ranking           (Q, 3) int8   each shown episode's rank: 0 best, equal episodes share a rank
    preferences/labeller          (Q,)  int32   index into "labellers" (a simulated person with its settings, a name)
    preferences/time              (Q,)  float64 when it was answered (Unix seconds)

Crash safety as for episodes: rows are written past the commit record, then the group's attributes (one atomic
file replace) make them visible; a writer holds the store's writer lock. Several answers to the same query (a second
labeller) are separate rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embodied.datasets._zarr import acquire_lock, release_lock
from embodied.datasets.errors import StoreCorruptError, StoreError

GROUP = "preferences"
SLOTS = 3  # episodes per query row (a pair leaves the third slot at -1)
_ARRAYS = (("episodes", "int64", (SLOTS,)), ("ranking", "int8", (SLOTS,)), ("labeller", "int32", ()),
           ("time", "float64", ()))  # fmt: skip


@dataclass
class Preferences:
    """Answered queries, read from a store."""

    episodes: np.ndarray  # (Q, 3) int64, -1 for an unused slot
    ranking: np.ndarray  # (Q, 3) int8, 0 best; -1 for an unused slot
    labeller: np.ndarray  # (Q,) int32
    labellers: list[str]
    time: np.ndarray  # (Q,) float64

    def __len__(self) -> int:
        return len(self.episodes)

    def subset(self, rows) -> Preferences:
        """Only ``rows`` (indices or a boolean mask)."""
        return Preferences(self.episodes[rows], self.ranking[rows], self.labeller[rows], self.labellers,
                           self.time[rows])  # fmt: skip


def read_preferences(store_path: str | Path) -> Preferences:
    """The committed preferences of a store (empty when it has none)."""
    import zarr

    path = Path(store_path)
    if not (path / GROUP / "zarr.json").exists():
        return _empty()
    group = zarr.open_group(str(path / GROUP), mode="r")
    n = int(group.attrs.get("commit", {"n": 0})["n"])  # no commit record: a table being created, still empty
    if n == 0:
        return _empty()
    try:
        arrays = {key: group[key][:n] for key in ("episodes", "ranking", "labeller", "time")}
    except Exception as error:
        raise StoreCorruptError(f"{path}/{GROUP}: unreadable preference table ({error})") from error
    if any(len(a) < n for a in arrays.values()):
        raise StoreCorruptError(f"{path}/{GROUP}: {n} answers committed but fewer stored (truncated table)")
    return Preferences(arrays["episodes"], arrays["ranking"], arrays["labeller"], list(group.attrs["labellers"]),
                       arrays["time"])  # fmt: skip


def _empty() -> Preferences:
    return Preferences(np.zeros((0, SLOTS), np.int64), np.zeros((0, SLOTS), np.int8), np.zeros(0, np.int32), [],
                       np.zeros(0))  # fmt: skip


def query_key(episodes) -> tuple[int, ...]:
    """A query's identity whatever the order shown: its episodes, sorted (unused slots dropped)."""
    return tuple(sorted(int(e) for e in episodes if e >= 0))


def ranks_from_costs(costs, equal_tolerance: float = 0.0) -> np.ndarray:
    """Ranks (0 best) of episodes by cost, equal within ``equal_tolerance`` of the next better one sharing its rank."""
    costs = np.asarray(costs, dtype=np.float64)
    order = np.argsort(costs, kind="stable")
    ranks = np.zeros(len(costs), np.int8)
    rank = 0
    for position in range(1, len(order)):
        if costs[order[position]] - costs[order[position - 1]] > equal_tolerance:
            rank = position
        ranks[order[position]] = rank
    return ranks


class PreferenceWriter:
    """Appends answers to a store's preference table, each committed as it is added (``with`` closes it)."""

    def __init__(self, store_path: str | Path, _lock=None):
        import zarr

        self.path = Path(store_path)
        if not (self.path / "zarr.json").exists():
            raise StoreError(f"no episode store at {self.path} (zarr.json not found)")
        self._lock = _lock if _lock is not None else acquire_lock(self.path)
        try:
            root = zarr.open_group(str(self.path), mode="r+")
            if GROUP not in root:  # its attributes hold an empty commit record from the start
                root.create_group(GROUP, attributes={"commit": {"n": 0}, "labellers": []})
            self.group = root[GROUP]
            self.n = int(self.group.attrs.get("commit", {"n": 0})["n"])
            for key, dtype, shape in _ARRAYS:  # arrays a writer killed while creating the table left missing
                if key not in self.group:
                    if self.n:
                        raise StoreCorruptError(f"{self.path}/{GROUP}: array {key} is missing")
                    self.group.create_array(key, shape=(0, *shape), chunks=(1024, *shape), dtype=dtype)
            self.labellers = list(self.group.attrs.get("labellers", []))
            self.n_episodes = int(root.attrs["embodied"]["commit"]["n_episodes"])
        except BaseException:
            self.close()
            raise

    def append(self, episodes, ranking, labeller: str, when: float | None = None) -> int:
        """Records one answer (``episodes`` shown, their ``ranking``, 0 best) and commits it; returns its row."""
        episodes = list(map(int, episodes))
        ranking = list(map(int, ranking))
        if not 2 <= len(episodes) <= SLOTS or len(ranking) != len(episodes):
            raise ValueError(f"a query shows 2 or {SLOTS} episodes with one rank each, got {episodes} / {ranking}")
        if len(set(episodes)) != len(episodes) or not all(0 <= e < self.n_episodes for e in episodes):
            raise ValueError(f"episodes {episodes}: must be distinct indices below {self.n_episodes}")
        if min(ranking) != 0 or not all(0 <= r < len(episodes) for r in ranking):
            raise ValueError(f"ranking {ranking}: ranks count from 0 (best) and equal episodes share one")
        if labeller not in self.labellers:
            self.labellers.append(labeller)
        pad = SLOTS - len(episodes)
        row = self.n
        values = {"episodes": episodes + [-1] * pad, "ranking": ranking + [-1] * pad,
                  "labeller": self.labellers.index(labeller),
                  "time": time.time() if when is None else when}  # fmt: skip
        for key, value in values.items():  # 1. past the commit record: invisible until step 2
            array = self.group[key]
            array.resize((row + 1, *array.shape[1:]))
            array[row] = value
        self.group.attrs.update({"commit": {"n": row + 1}, "labellers": self.labellers})  # 2. the commit
        self.n = row + 1
        return row

    def retract_last(self, labeller: str) -> int | None:
        """Removes the newest answer if ``labeller`` gave it (a labeller's undo), by moving the commit record back
        one row (atomic, like a commit); returns the removed row, or None when the newest answer is not theirs."""
        if self.n == 0 or self.labellers[int(self.group["labeller"][self.n - 1])] != labeller:
            return None
        self.n -= 1
        self.group.attrs.update({"commit": {"n": self.n}, "labellers": self.labellers})
        return self.n

    def close(self) -> None:
        """Releases the store's writer lock."""
        if self._lock is not None:
            release_lock(self._lock)
            self._lock = None

    def __enter__(self) -> PreferenceWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
