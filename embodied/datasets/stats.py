"""Per-feature statistics (mean, std, min, max, q01, q99), updated episode by episode.

Mean, std, min and max merge exactly across batches (Chan et al.'s parallel variance). Quantiles do not
merge, so float features keep their rows in memory (they are small: tens of floats per step) and uint8
images keep a 256-bin histogram per channel, which is exact for 8-bit data.
"""

from __future__ import annotations

import numpy as np

QUANTILES = (0.01, 0.99)


class RunningStats:
    """Statistics of one feature over its trailing dimension: images per channel, vectors per element."""

    def __init__(self, is_image: bool, dim: int):
        self.is_image = is_image
        self.dim = dim
        self.count = 0
        self.mean = np.zeros(dim)
        self.m2 = np.zeros(dim)  # sum of squared deviations from the mean
        self.min = np.full(dim, np.inf)
        self.max = np.full(dim, -np.inf)
        self.histogram = np.zeros((dim, 256), dtype=np.int64) if is_image else None
        self._rows: list[np.ndarray] = []  # float features only: every row, for exact quantiles

    def update(self, values: np.ndarray) -> None:
        """Adds a batch: ``values`` of shape (..., dim)."""
        flat = np.asarray(values).reshape(-1, self.dim)
        if flat.shape[0] == 0:
            return
        batch = flat.astype(np.float64)
        n_b = batch.shape[0]
        mean_b = batch.mean(0)
        m2_b = ((batch - mean_b) ** 2).sum(0)
        n = self.count + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * n_b / n
        self.m2 = self.m2 + m2_b + delta**2 * self.count * n_b / n
        self.count = n
        self.min = np.minimum(self.min, batch.min(0))
        self.max = np.maximum(self.max, batch.max(0))
        if self.is_image:
            for c in range(self.dim):
                self.histogram[c] += np.bincount(flat[:, c], minlength=256)
        else:
            self._rows.append(flat.astype(np.float64))

    def quantiles(self) -> np.ndarray:
        """(len(QUANTILES), dim), with numpy's default (linear) interpolation."""
        if self.count == 0:
            return np.zeros((len(QUANTILES), self.dim))
        if self.is_image:
            return np.stack([_histogram_quantile(self.histogram, q) for q in QUANTILES])
        if len(self._rows) > 1:
            self._rows = [np.concatenate(self._rows)]
        return np.quantile(self._rows[0], QUANTILES, axis=0)

    def to_dict(self) -> dict:
        """The statistics as saved in a store's attributes (with the bookkeeping to continue them)."""
        q01, q99 = self.quantiles()
        std = np.sqrt(self.m2 / max(self.count, 1))
        out = {
            "count": int(self.count),
            "mean": self.mean.tolist(),
            "std": std.tolist(),
            "min": self.min.tolist(),
            "max": self.max.tolist(),
            "q01": q01.tolist(),
            "q99": q99.tolist(),
            # m2 is kept so a resumed writer continues the exact merge.
            "m2": self.m2.tolist(),
        }
        if self.is_image:
            out["histogram"] = self.histogram.tolist()
        return out

    @classmethod
    def from_dict(cls, d: dict, is_image: bool, rows: np.ndarray | None = None) -> RunningStats:
        """Restores saved statistics; float features also need their stored ``rows`` for quantiles."""
        stats = cls(is_image, len(d["mean"]))
        stats.count = int(d["count"])
        stats.mean = np.array(d["mean"], dtype=np.float64)
        stats.m2 = np.array(d["m2"], dtype=np.float64)
        stats.min = np.array(d["min"], dtype=np.float64)
        stats.max = np.array(d["max"], dtype=np.float64)
        if is_image:
            stats.histogram = np.array(d["histogram"], dtype=np.int64)
        elif rows is not None and len(rows):
            stats._rows = [np.asarray(rows, dtype=np.float64).reshape(-1, stats.dim)]
        return stats


def _histogram_quantile(histogram: np.ndarray, q: float) -> np.ndarray:
    """numpy's linear-interpolation quantile of integer data given as per-channel counts (C, 256)."""
    out = np.empty(histogram.shape[0])
    for c, counts in enumerate(histogram):
        cumulative = np.cumsum(counts)
        n = cumulative[-1]
        position = q * (n - 1)  # 0-based rank in the sorted data
        lo, hi = int(np.floor(position)), int(np.ceil(position))
        value_lo = np.searchsorted(cumulative, lo, side="right")
        value_hi = np.searchsorted(cumulative, hi, side="right")
        out[c] = value_lo + (value_hi - value_lo) * (position - lo)
    return out


STAT_FIELDS = ("mean", "std", "min", "max", "q01", "q99", "m2")


def stats_problem(key: str, stats: dict, dim: int, is_image: bool) -> str | None:
    """What is wrong with one feature's saved statistics (``dim`` values per field, finite), or None.

    Damaged statistics would otherwise surface far away: as NaN losses in training or NaN actions in a rollout.
    """
    if not isinstance(stats, dict) or "count" not in stats:
        return f"statistics of {key!r} have no count"
    missing = [f for f in STAT_FIELDS if f not in stats]
    if missing:
        return f"statistics of {key!r} lack {', '.join(missing)}"
    count = stats["count"]
    if not isinstance(count, int) or count < 0:
        return f"statistics of {key!r} have count {count!r}"
    for name in STAT_FIELDS:
        values = np.asarray(stats[name], dtype=np.float64)
        if values.shape != (dim,):
            return f"statistics of {key!r}: {name} has shape {values.shape}, the feature {dim} values"
        if count and not np.all(np.isfinite(values)):
            bad = int(np.flatnonzero(~np.isfinite(values))[0])
            return f"statistics of {key!r}: {name}[{bad}] is {values[bad]} (not finite)"
    if count and np.any(np.asarray(stats["std"]) < 0):
        return f"statistics of {key!r}: a negative std"
    if is_image:
        histogram = np.asarray(stats.get("histogram", []))
        if histogram.shape != (dim, 256) or np.any(histogram < 0):
            return f"statistics of {key!r}: the image histogram has shape {histogram.shape}, expected ({dim}, 256)"
    return None


def public(stats: dict) -> dict:
    """Statistics without the bookkeeping fields (m2, histogram), as users and normalisers see them."""
    return {k: v for k, v in stats.items() if k not in ("m2", "histogram")}


def merge_stats(per_store: list[dict]) -> dict:
    """One set of statistics for a mixture of stores, for the features every store has with the same width:
    count-weighted mean, pooled standard deviation, element-wise min/max; q01/q99 are the element-wise
    min/max of the stores' quantiles (a conservative bound, exact quantiles need the data). Policies that keep
    per-dataset statistics (the VLA) use each store's own instead."""
    first = per_store[0]
    keys = [k for k in first if all(k in s and len(s[k]["mean"]) == len(first[k]["mean"]) for s in per_store)]
    merged = {}
    for key in keys:
        parts = [s[key] for s in per_store]
        counts = np.array([p["count"] for p in parts], dtype=np.float64)[:, None]
        means = np.array([p["mean"] for p in parts], dtype=np.float64)
        stds = np.array([p["std"] for p in parts], dtype=np.float64)
        total = max(counts.sum(), 1.0)
        mean = (counts * means).sum(0) / total
        variance = (counts * (stds**2 + means**2)).sum(0) / total - mean**2
        merged[key] = {
            "count": int(counts.sum()),
            "mean": mean.tolist(),
            "std": np.sqrt(np.maximum(variance, 0.0)).tolist(),
            "min": np.min([p["min"] for p in parts], 0).tolist(),
            "max": np.max([p["max"] for p in parts], 0).tolist(),
            "q01": np.min([p["q01"] for p in parts], 0).tolist(),
            "q99": np.max([p["q99"] for p in parts], 0).tolist(),
        }
    return merged
