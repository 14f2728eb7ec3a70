"""The batch order of a run, fixed by the step number, so a resumed run sees exactly the batches an uninterrupted
one would; under torchrun each rank reads its contiguous share of every global batch, so N ranks together train on
exactly the batches one process would."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class StepBatchSampler(Sampler[list[int]]):
    """An endless stream of shuffled batches in which batch ``s`` depends only on ``(seed, s)``.

    Epoch ``e`` is a permutation drawn from ``seed + e``; batch ``s`` is slice ``s mod batches_per_epoch`` of epoch
    ``s // batches_per_epoch`` (the last partial batch of each epoch is dropped). A resumed run therefore sees
    exactly the batches an uninterrupted run would, whatever the DataLoader prefetched before the interruption.
    With ``world_size`` ranks, rank ``r`` yields slice ``r`` of ``world_size`` equal slices of each global batch.
    """

    def __init__(self, num_items: int, batch_size: int, seed: int, start_step: int = 0, rank: int = 0,
                 world_size: int = 1):  # fmt: skip
        if num_items < batch_size:
            raise ValueError(f"the dataset has {num_items} windows, fewer than batch_size={batch_size}")
        if batch_size % world_size:
            raise ValueError(f"batch_size={batch_size} does not split over {world_size} processes")
        self.num_items, self.batch_size, self.seed, self.start_step = num_items, batch_size, seed, start_step
        self.rank, self.world_size = rank, world_size
        self.batches_per_epoch = num_items // batch_size
        self._epoch, self._order = None, None

    def indices(self, step: int) -> list[int]:
        """This rank's item indices of global batch ``step``."""
        epoch, position = divmod(step, self.batches_per_epoch)
        if epoch != self._epoch:  # one permutation per epoch, drawn when the epoch starts
            self._epoch = epoch
            self._order = torch.randperm(self.num_items, generator=torch.Generator().manual_seed(self.seed + epoch))
        share = self.batch_size // self.world_size
        start = position * self.batch_size + self.rank * share
        return self._order[start : start + share].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while True:
            yield self.indices(step)
            step += 1

    def __len__(self) -> int:  # endless; DataLoader only needs a number
        return 2**62


def step_batches(dataset, batch_size: int, seed: int, num_workers: int = 0, pin_memory: bool = False):
    """``batches(start_step)`` for the Trainer: an iterator over whole batches of ``dataset`` (anything with
    ``get_batch(indices)``, e.g. a WindowDataset) in the order of :class:`StepBatchSampler` (this rank's share under
    torchrun), read through a DataLoader with ``num_workers`` processes (``pin_memory``: page-locked, for
    non-blocking copies to a GPU)."""
    from torch.utils.data import DataLoader

    from embodied.training.distributed import context

    ctx = context()

    def batches(start_step: int):
        sampler = StepBatchSampler(len(dataset), batch_size, seed, start_step, ctx.rank, ctx.world_size)
        loader = DataLoader(
            dataset,
            sampler=sampler,
            batch_size=None,  # the sampler yields whole batches of indices: one read per key per batch
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=num_workers > 0,
            # its own generator: starting the loader must not draw from the global RNG a resumed run restores
            generator=torch.Generator().manual_seed(seed),
        )
        return iter(loader)

    return batches
