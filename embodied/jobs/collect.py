"""`embodied collect env=franka episodes=100 out=PATH`: scripted-expert episodes into an episode store."""

from __future__ import annotations

from pathlib import Path

from embodied.evaluation.collection import CollectConfig, check_output, collect

SCHEMA = CollectConfig


def check(job: CollectConfig) -> None:
    """An ``out=`` that cannot become a store is refused before any episode is collected."""
    check_output(job)


def run(job: CollectConfig, run_dir: Path) -> None:
    """Collects (or resumes) the store and says where it is."""
    from embodied.training.distributed import context

    out = collect(job, run_dir)
    if context().is_main:
        print(f"store: {out.resolve()}")
        print(f"describe it with: embodied data info {out}")
