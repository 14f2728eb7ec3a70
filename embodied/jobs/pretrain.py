"""`embodied pretrain encoder=NAME objective=mae|tov_vicreg|time_contrastive dataset=PATH`: self-supervised
pretraining of an encoder on one camera of one or more episode stores; the output loads as
``policy.encoder.pretrained``."""

from __future__ import annotations

from pathlib import Path

from embodied.configs.checks import ConfigValueError
from embodied.pretrain.fit import PretrainConfig, pretrain

SCHEMA = PretrainConfig


def check(job: PretrainConfig) -> None:
    """``resume`` names its run."""
    if job.resume and not job.run_dir:
        raise ConfigValueError("resume=true needs run_dir=<the run to continue>, e.g. run_dir=outputs/pretrain/<time>")


def run(job: PretrainConfig, run_dir: Path) -> None:
    """Pretrains and says how to use the result."""
    out = pretrain(job, run_dir)
    name = job.policy["encoder"]["name"]
    print(f"encoder: {out}")
    print(f"use it with: encoder={name} policy.encoder.pretrained={out}")
