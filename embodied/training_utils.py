"""Pieces of the training loop that resumption depends on: a batch order fixed by the step number, RNG state
capture, devices, and atomically written checkpoint directories."""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Sampler


class StepBatchSampler(Sampler[list[int]]):
    """An endless stream of shuffled batches in which batch ``s`` depends only on ``(seed, s)``.

    Epoch ``e`` is a permutation drawn from ``seed + e``; batch ``s`` is slice ``s mod batches_per_epoch`` of epoch
    ``s // batches_per_epoch`` (the last partial batch of each epoch is dropped). A resumed run therefore sees
    exactly the batches an uninterrupted run would, whatever the DataLoader prefetched before the interruption.
    """

    def __init__(self, num_items: int, batch_size: int, seed: int, start_step: int = 0):
        if num_items < batch_size:
            raise ValueError(f"the dataset has {num_items} windows, fewer than batch_size={batch_size}")
        self.num_items, self.batch_size, self.seed, self.start_step = num_items, batch_size, seed, start_step
        self.batches_per_epoch = num_items // batch_size
        self._epoch, self._order = None, None

    def indices(self, step: int) -> list[int]:
        epoch, position = divmod(step, self.batches_per_epoch)
        if epoch != self._epoch:  # one permutation per epoch, drawn when the epoch starts
            self._epoch = epoch
            self._order = torch.randperm(self.num_items, generator=torch.Generator().manual_seed(self.seed + epoch))
        return self._order[position * self.batch_size : (position + 1) * self.batch_size].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while True:
            yield self.indices(step)
            step += 1

    def __len__(self) -> int:  # endless; DataLoader only needs a number
        return 2**62


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name} requested but torch sees no CUDA device (use device=auto or cpu)")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_atomically(final: Path, write) -> Path:
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
