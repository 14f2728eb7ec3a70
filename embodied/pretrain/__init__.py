"""`embodied pretrain encoder=NAME objective=mae|tov_vicreg|time_contrastive dataset=PATH`: self-supervised
pretraining of an encoder on one camera of one or more episode stores.

Writes a directory that ``policy.encoder.pretrained=DIR`` loads (with the same ``encoder=NAME``): the backbone's
``config.json`` + ``model.safetensors`` (transformers ``save_pretrained``), ``preprocessor_config.json`` (the
normalisation it was trained with) and ``embodied_pretrain.json`` (objective, data, steps, final metrics).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from embodied.config_checks import at_least
from embodied.train import OptimConfig


@dataclass
class PretrainConfig:
    # only policy.encoder is read: the `encoder` config group lives at policy.encoder in every job
    policy: Any = None
    objective: str = "tov_vicreg"  # mae | tov_vicreg | time_contrastive
    objective_args: dict = field(default_factory=dict)  # e.g. {mask_ratio: 0.75}, {max_gap: 10}, {window: 3}
    dataset: str | None = None  # one store, or
    datasets: list[str] = field(default_factory=list)  # several
    camera: str | None = None  # image key; null: the first camera of the first store
    steps: int = 2000
    batch_size: int = 32
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-4, weight_decay=0.05, warmup_steps=100))
    seed: int = 0
    device: str = "auto"
    out: str | None = None  # default <run_dir>/encoder
    log_every: int = 25
    run_dir: str | None = None  # default outputs/pretrain/<time>
    progress: bool = True

    CHECKS: ClassVar = {"steps": at_least(1), "batch_size": at_least(1), "log_every": at_least(1)}


def pretrain(job: PretrainConfig, run_dir: Path) -> Path:
    from tqdm.auto import tqdm

    from embodied.datasets.store import EpisodeStore
    from embodied.encoders import make_encoder
    from embodied.pretrain.frames import FrameSampler
    from embodied.pretrain.objectives import OBJECTIVES
    from embodied.train import MetricsLog, TrainingDiverged, clip_gradients, make_scheduler
    from embodied.training_utils import resolve_device, seed_everything

    paths = ([job.dataset] if job.dataset else []) + list(job.datasets)
    if not paths:
        raise ValueError(
            "embodied pretrain needs dataset=PATH (or datasets=[PATH,...]): stores from `embodied collect`"
        )
    for path in paths:
        if not Path(path).exists():
            raise FileNotFoundError(f"dataset {path!r} does not exist")
    if job.objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {sorted(OBJECTIVES)}, got {job.objective!r}")
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
    objective = OBJECTIVES[job.objective](encoder, **job.objective_args).to(device)
    optimizer = torch.optim.AdamW(
        objective.parameters(), lr=job.optim.lr, betas=tuple(job.optim.betas), weight_decay=job.optim.weight_decay
    )
    scheduler = make_scheduler(optimizer, job.optim, job.steps)
    rng = np.random.default_rng(job.seed)
    log = MetricsLog(run_dir)
    bar = tqdm(range(job.steps), desc=f"pretrain {job.objective}", disable=not job.progress, dynamic_ncols=True)
    metrics: dict = {}
    objective.train()
    started = time.perf_counter()
    try:
        for step in bar:
            loss, metrics = objective(objective.sample(frames, rng, job.batch_size))
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"pretraining loss is {loss.item()} at step {step + 1}; lower optim.lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clip_gradients(objective, job.optim.grad_clip)
            optimizer.step()
            scheduler.step()
            metrics = {"loss": loss.item(), **metrics}
            if (step + 1) % job.log_every == 0 or step + 1 == job.steps:
                log.write("pretrain", step + 1, metrics)
                bar.set_postfix(loss=f"{metrics['loss']:.4f}")
    finally:
        log.close()
    seconds = time.perf_counter() - started

    out = Path(job.out) if job.out else run_dir / "encoder"
    save_encoder(
        encoder,
        out,
        {
            "objective": job.objective,
            "objective_args": job.objective_args,
            "datasets": [str(p) for p in paths],
            "camera": camera,
            "steps": job.steps,
            "encoder": encoder_cfg,
            "final_metrics": metrics,
            "seconds": round(seconds, 1),
            "samples_per_s": round(job.steps * job.batch_size / max(seconds, 1e-9), 1),
        },
    )
    return out


def save_encoder(encoder, out: Path, info: dict) -> Path:
    """The backbone in transformers' format plus its normalisation, loadable with ``pretrained=out``."""
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
    from embodied.integrity import write_manifest

    write_manifest(out)  # checked when `policy.encoder.pretrained=out` loads it
    return out
