"""Training checkpoints: written atomically with a checksum manifest, restored exactly.

A checkpoint directory holds what the model exports for inference (a policy's ``save_pretrained`` files, ...),
``training_state.pt`` (step, full raw weights, optimiser, scheduler, EMA, each rank's RNG state, and the settings a
resume must match; consolidated, so it resumes on any number of ranks) and ``checksums.json``; ``checkpoints/last``
links to the newest one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from embodied.integrity import CheckpointError, verify_manifest, write_manifest

STATE_FILE = "training_state.pt"


def write_atomically(final: Path, write: Callable[[Path], None]) -> Path:
    """Calls ``write(tmp_dir)`` and renames the directory into place, so a crash never leaves half a checkpoint."""
    final = Path(final)
    tmp = final.parent / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def point_link(link: Path, target: Path) -> None:
    """Makes ``link`` a relative symlink to ``target``, replacing any previous one atomically."""
    tmp = link.parent / f".{link.name}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(os.path.relpath(target, link.parent))
    os.replace(tmp, link)


def save_checkpoint(checkpoints: Path, step: int, state: dict, export: Callable[[Path], None] | None) -> Path:
    """``checkpoints/step_NNNNNNN`` holding ``state`` (``training_state.pt``: step, full model and optimiser state,
    scheduler, EMA, each rank's RNG state, the resume check) and what ``export(directory)`` writes (the inference
    files), then the ``last`` link to it."""

    def write(directory: Path) -> None:
        if export is not None:
            export(directory)
        torch.save(state, directory / STATE_FILE)
        write_manifest(directory)  # last: it covers every file, the training state included

    checkpoints.mkdir(parents=True, exist_ok=True)
    final = write_atomically(checkpoints / f"step_{step:07d}", write)
    point_link(checkpoints / "last", final)
    return final


def load_training_state(last: Path, resume_check: dict, device=None) -> dict:
    """``last``'s training state, checked against its manifest and its settings against ``resume_check`` (a
    changed setting is refused naming each differing field)."""
    if not (last / STATE_FILE).is_file():
        raise FileNotFoundError(
            f"resume=true but {last} holds no {STATE_FILE}; pass the run_dir of a run to continue "
            "(run_dir=outputs/train/<time>)"
        )
    verify_manifest(last)
    try:
        state = torch.load(last / STATE_FILE, map_location=device or "cpu", weights_only=False)
    except Exception as error:
        raise CheckpointError(f"{last / STATE_FILE} cannot be loaded: {type(error).__name__}: {error}") from None
    saved = state.get("resume_check")
    if saved is None and (last / "config.yaml").is_file():  # written before the check was stored: the config
        from omegaconf import OmegaConf

        config = OmegaConf.to_container(OmegaConf.load(last / "config.yaml"))
        saved = {key: config.get(key) for key in resume_check}
    differences = []
    for key, value in resume_check.items():
        differences += config_differences((saved or {}).get(key), value, key)
    if differences:
        shown = "; ".join(differences[:6]) + ("; ..." if len(differences) > 6 else "")
        raise ValueError(
            f"cannot resume {last.resolve()}: the run's settings changed ({shown}). Pass the checkpoint's values, "
            "or start a new run (another run_dir)"
        )
    return state


def config_differences(saved: Any, now: Any, path: str) -> list[str]:
    """``path: value`` pairs where two nested configs differ: ``policy.encoder.name: 'cnn' in the checkpoint,
    'resnet18' now``."""
    if isinstance(saved, dict) and isinstance(now, dict):
        out = []
        for key in sorted(set(saved) | set(now), key=str):
            out += config_differences(saved.get(key), now.get(key), f"{path}.{key}")
        return out
    if isinstance(saved, (list, tuple)) and isinstance(now, (list, tuple)):
        saved, now = list(saved), list(now)
    return [] if saved == now else [f"{path}: {saved!r} in the checkpoint, {now!r} now"]
