"""`embodied reward align dataset=STORE demos=STORE [reward.method=rapl|rlhf|ot] [encoder=NAME]`: a visual reward
learned from a store's preference table (RAPL, or the RLHF baseline); the output loads with `reward score`."""

from __future__ import annotations

from pathlib import Path

from embodied.configs.checks import ConfigValueError
from embodied.rewards.align import AlignConfig, align

SCHEMA = AlignConfig


def check(job: AlignConfig) -> None:
    """``resume`` names its run."""
    if job.resume and not job.run_dir:
        raise ConfigValueError(
            "resume=true needs run_dir=<the run to continue>, e.g. run_dir=outputs/reward_align/<time>"
        )


def run(job: AlignConfig, run_dir: Path) -> None:
    """Aligns and says how to use the result."""
    out = align(job, run_dir)
    print(f"reward: {out}")
    print(f"score a store with it: embodied reward score checkpoint={out} dataset=STORE")
