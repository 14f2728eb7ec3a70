"""`embodied align checkpoint=POLICY reward=REWARD [method=dpo|weighted_bc|filtered_bc] [rounds=3]`: a trained
policy improved on a learned visual reward (RAPL's or RLHF's, `embodied reward align`) or on the hidden cost
(reward=true_cost), with a before/after report."""

from __future__ import annotations

from pathlib import Path

from embodied.alignment.config import PolicyAlignConfig
from embodied.configs.checks import ConfigValueError

SCHEMA = PolicyAlignConfig


def check(job: PolicyAlignConfig) -> None:
    """A policy and a reward are named; ``resume`` names its run."""
    if not job.checkpoint or not job.reward:
        raise ConfigValueError("embodied align needs checkpoint=POLICY_DIR and reward=REWARD_DIR (or reward=true_cost)")
    if job.resume and not job.run_dir:
        raise ConfigValueError("resume=true needs run_dir=<the run to continue>, e.g. run_dir=outputs/align/<time>")


def run(job: PolicyAlignConfig, run_dir: Path) -> None:
    """Aligns and says where the policy and the report are."""
    from embodied.alignment.loop import align_policy

    out = align_policy(job, run_dir)
    print(f"aligned policy: {out} (embodied eval checkpoint={out})")
    print(f"report: {Path(run_dir) / 'report.md'}")
