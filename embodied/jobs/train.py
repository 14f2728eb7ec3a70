"""`embodied train policy=<name> env=<name> [dataset=PATH]`: fit a policy to episode stores.

Without ``dataset=``, the env's default demo store is used (collected once into the cache on first use).
"""

from __future__ import annotations

from pathlib import Path

from embodied.training.fit_policy import TrainConfig, check_datasets, resolve_dataset, train

SCHEMA = TrainConfig
check = check_datasets


def run(job: TrainConfig, run_dir: Path) -> None:
    """Trains and says how to evaluate the result."""
    from embodied.training.distributed import context

    resolve_dataset(job)
    final = train(job, run_dir)
    if context().is_main:
        print(f"checkpoint: {final}")
        print(f"evaluate it with: embodied eval checkpoint={run_dir / 'checkpoints' / 'last'}")
