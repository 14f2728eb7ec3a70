"""Training metrics: scalars to TensorBoard and to ``metrics.jsonl`` (read by reports, benchmarks and tests)."""

from __future__ import annotations

import json
import math
from pathlib import Path


class MetricsLog:
    """Appends ``{"split": ..., "step": ..., **values}`` lines to ``<run_dir>/metrics.jsonl`` and, when TensorBoard
    is installed, scalars to ``<run_dir>/tensorboard`` as ``<split>/<name>``."""

    def __init__(self, run_dir: Path):
        run_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(run_dir / "metrics.jsonl", "a")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tensorboard = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:
            self._tensorboard = None

    def write(self, split: str, step: int, values: dict) -> None:
        """One record (flushed at once: a killed run keeps every logged line)."""
        self._jsonl.write(json.dumps({"split": split, "step": step, **values}) + "\n")
        self._jsonl.flush()
        if self._tensorboard is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self._tensorboard.add_scalar(f"{split}/{key}", value, step)

    def close(self) -> None:
        """Closes both sinks."""
        self._jsonl.close()
        if self._tensorboard is not None:
            self._tensorboard.close()
