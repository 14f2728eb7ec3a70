"""Pretraining an encoder with an objective on one camera of one or more episode stores, through the Trainer.

Writes a directory that ``policy.encoder.pretrained=DIR`` loads (with the same ``encoder=NAME``): the backbone's
``config.json`` + ``model.safetensors`` (transformers ``save_pretrained``), ``preprocessor_config.json`` (the
normalisation it was trained with), ``embodied_pretrain.json`` (objective, data, steps, final metrics) and
``checksums.json``. Every checkpoint of the run (``<run_dir>/checkpoints/step_N``) is such a directory too, plus
the training state, so an interrupted run resumes with ``resume=true``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from embodied.configs.checks import at_least
from embodied.training.optim import OptimConfig


@dataclass
class PretrainConfig:
    """What `embodied pretrain` does."""

    # only policy.encoder is read: the `encoder` config group lives at policy.encoder in every job
    policy: Any = None
    # mae | tov_vicreg | time_contrastive | lang_reg | lang_dist | stage_classify (any registered in OBJECTIVES)
    objective: str = "tov_vicreg"
    # e.g. {mask_ratio: 0.75}, {max_gap: 10}, {window: 3}, {text_encoder: {model: PATH}} (lang_reg, lang_dist)
    objective_args: dict = field(default_factory=dict)
    dataset: str | None = None  # one store, or
    datasets: list[str] = field(default_factory=list)  # several
    camera: str | None = None  # image key; null: the first camera of the first store
    steps: int = 2000  # optimiser steps
    batch_size: int = 32  # frames (pairs, triplets) per step
    # AdamW; the defaults are those of self-supervised ViT training, far lower than BC's
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-4, weight_decay=0.05, warmup_steps=100))
    seed: int = 0  # seeds the initialisation and every batch (batch s depends only on the seed and s)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    out: str | None = None  # default <run_dir>/encoder
    log_every: int = 25  # steps between metrics records
    checkpoint_every: int = 1000  # and at the last step (and on Ctrl-C or SIGTERM)
    resume: bool = False  # continue <run_dir>/checkpoints/last (needs run_dir=)
    run_dir: str | None = None  # default outputs/pretrain/<time>
    progress: bool = True  # progress bar on the terminal
    plugins: list[str] = field(default_factory=list)  # modules to import first (components of your own)

    CHECKS: ClassVar = {
        "steps": at_least(1), "batch_size": at_least(1), "log_every": at_least(1), "checkpoint_every": at_least(1),
    }  # fmt: skip


def pretrain(job: PretrainConfig, run_dir: Path) -> Path:
    """Pretrains ``policy.encoder`` with ``objective`` on the stores; returns the output directory."""
    import numpy as np

    from embodied.datasets.store import EpisodeStore
    from embodied.encoders import make_encoder
    from embodied.pretrain import OBJECTIVES
    from embodied.pretrain.frames import FrameSampler
    from embodied.runtime import resolve_device, seed_everything
    from embodied.training.trainer import Trainer, TrainerConfig

    paths = ([job.dataset] if job.dataset else []) + list(job.datasets)
    if not paths:
        raise ValueError(
            "embodied pretrain needs dataset=PATH (or datasets=[PATH,...]): stores from `embodied collect`"
        )
    for path in paths:
        if not Path(path).exists():
            raise FileNotFoundError(f"dataset {path!r} does not exist")
    if job.objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES.names())}, got {job.objective!r}")
    stores = [EpisodeStore(p) for p in paths]
    camera = job.camera or next((k for k, f in stores[0].features.items() if f.kind == "image"), None)
    if camera is None:
        raise ValueError(f"{paths[0]} has no camera images to pretrain on")
    frames = FrameSampler(stores, camera)

    device = resolve_device(job.device)
    seed_everything(job.seed)
    encoder_cfg = dict((job.policy or {}).get("encoder") or {"name": "vit"})
    encoder = make_encoder({**encoder_cfg, "train": "finetune"})
    if not hasattr(encoder, "backbone"):
        raise ValueError(
            f"encoder {encoder_cfg.get('name')!r} has no transformers backbone to save; pretrain a "
            "resnet or a vit-family encoder"
        )
    objective = OBJECTIVES.get(job.objective)(encoder, **job.objective_args).to(device)
    objective.prepare(frames)
    info = {"objective": job.objective, "objective_args": job.objective_args, "datasets": [str(p) for p in paths],
            "camera": camera, "encoder": encoder_cfg}  # fmt: skip

    def batches(start_step: int):
        step = start_step
        while True:  # batch s depends only on (seed, s): a resumed run draws the same frames
            yield objective.sample(frames, np.random.default_rng([job.seed, step]), job.batch_size)
            step += 1

    config = TrainerConfig(
        steps=job.steps, batch_size=job.batch_size, optim=job.optim, log_every=job.log_every,
        checkpoint_every=job.checkpoint_every, resume=job.resume, progress=job.progress, split="pretrain",
    )  # fmt: skip
    trainer = Trainer(
        objective,
        batches,
        config,
        run_dir,
        export=lambda model, directory: save_encoder(model.encoder, directory, info, manifest=False),
        resume_check={
            "objective": job.objective,
            "objective_args": job.objective_args,
            "encoder": encoder_cfg,
            "batch_size": job.batch_size,
            "seed": job.seed,
        },  # fmt: skip
    )
    started = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - started
    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if line]
    final = {k: v for k, v in rows[-1].items() if k not in ("split", "step")} if rows else {}
    out = Path(job.out) if job.out else Path(run_dir) / "encoder"
    rate = round(job.steps * job.batch_size / max(seconds, 1e-9), 1)
    summary = {**info, "steps": job.steps, "final_metrics": final, "seconds": round(seconds, 1), "samples_per_s": rate}
    return save_encoder(encoder, out, summary)


def save_encoder(encoder, out: Path, info: dict, manifest: bool = True) -> Path:
    """The backbone in transformers' format plus its normalisation, loadable with ``pretrained=out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    encoder.backbone.save_pretrained(out)
    processor = {
        "image_mean": encoder.mean.flatten().tolist(),
        "image_std": encoder.std.flatten().tolist(),
        "size": encoder.input_size,
    }
    (out / "preprocessor_config.json").write_text(json.dumps(processor, indent=1))
    (out / "embodied_pretrain.json").write_text(
        json.dumps({**info, "encoder_config": asdict(encoder.config)}, indent=1, default=str)
    )
    if manifest:
        from embodied.integrity import write_manifest

        write_manifest(out)  # checked when `policy.encoder.pretrained=out` loads it
    return out
