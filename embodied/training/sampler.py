"""The batch order of a run, fixed by the step number, so a resumed run sees exactly the batches an uninterrupted
one would."""

from __future__ import annotations

from collections.abc import Iterator

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
        """The item indices of batch ``step``."""
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


def step_batches(dataset, batch_size: int, seed: int, num_workers: int = 0):
    """``batches(start_step)`` for the Trainer: an iterator over whole batches of ``dataset`` (anything with
    ``get_batch(indices)``, e.g. a WindowDataset) in the order of :class:`StepBatchSampler`, read through a
    DataLoader with ``num_workers`` processes."""
    from torch.utils.data import DataLoader

    def batches(start_step: int):
        loader = DataLoader(
            dataset,
            sampler=StepBatchSampler(len(dataset), batch_size, seed, start_step=start_step),
            batch_size=None,  # the sampler yields whole batches of indices: one read per key per batch
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
            # its own generator: starting the loader must not draw from the global RNG a resumed run restores
            generator=torch.Generator().manual_seed(seed),
        )
        return iter(loader)

    return batches
