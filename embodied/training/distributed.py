"""The process group a command runs in: one process, or one rank of a ``torchrun`` launch.

``torchrun --nproc_per_node=N -m embodied.cli train ...`` (and multi-node launches through torchrun's rendezvous)
starts N copies of the command with ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set; :func:`init` joins them into one
process group (gloo on the CPU, NCCL for CUDA tensors with gloo beside it for objects) before any work, and every
other module asks :func:`context` who it is. Rank 0 alone writes logs, run directories and checkpoints; the
helpers here (:func:`broadcast`, :func:`all_gather`, :func:`mean_across`) are no-ops in a single process, so the
same code runs either way.

We use torch.distributed directly rather than accelerate: the one Trainer already owns the loop, autocast,
accumulation and checkpoints, so what remains is wrapping (DDP/FSDP2, :mod:`embodied.training.parallel`) and a few
collectives, which accelerate would wrap in a second config system.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

from embodied.configs.checks import one_of, positive

STRATEGIES = ("auto", "none", "ddp", "fsdp")


@dataclass
class DistributedConfig:
    """How training spreads over the processes torchrun started."""

    # auto: ddp under torchrun with more than one process, none otherwise; ddp: a replica per process, gradients
    # averaged (one process: none); fsdp: parameters, gradients and optimiser state sharded (FSDP2; the VLA's LM
    # and vision towers; needs torchrun, one process included)
    strategy: str = "auto"
    timeout_minutes: float = 30.0  # a collective waiting longer (a rank died or hangs) fails the run
    find_unused_parameters: bool = False  # ddp: for models whose loss leaves some trainable weights unused

    CHECKS: ClassVar = {"strategy": one_of(*STRATEGIES), "timeout_minutes": positive()}


@dataclass(frozen=True)
class Context:
    """Who this process is in the launch."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and prints progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether a process group with other ranks exists."""
        return self.world_size > 1


def launched() -> bool:
    """Whether torchrun (or another launcher setting ``RANK`` and ``WORLD_SIZE``) started this process."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init(device: str = "auto", timeout_minutes: float = 30.0) -> Context:
    """Joins the launch's process group (once; a single process joins nothing) and returns :func:`context`.

    CUDA ranks each take the GPU of their ``LOCAL_RANK`` and talk NCCL; gloo carries CPU tensors and Python objects
    (and everything on CPU-only machines)."""
    import torch
    import torch.distributed as dist

    if not launched() or dist.is_initialized():
        return context()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK={local_rank} but this node has {torch.cuda.device_count()} GPUs; start at most that many "
                "processes per node (torchrun --nproc_per_node)"
            )
        torch.cuda.set_device(local_rank)
    backend = "cpu:gloo,cuda:nccl" if cuda else "gloo"
    dist.init_process_group(backend, timeout=timedelta(minutes=timeout_minutes))
    return context()


def context() -> Context:
    """This process's rank, the number of ranks and its rank on this node (0, 1, 0 outside a launch)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return Context()
    return Context(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def device_for(name: str):
    """The device a rank trains on: ``auto``/``cuda`` under a launch mean this node's GPU ``LOCAL_RANK``."""
    import torch

    from embodied.runtime import resolve_device

    device = resolve_device(name)
    if device.type == "cuda" and launched() and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (a run directory's name, a timestamp)."""
    if not context().distributed:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather(value: Any) -> list:
    """Every rank's ``value``, in rank order, on every rank."""
    ctx = context()
    if not ctx.distributed:
        return [value]
    import torch.distributed as dist

    out: list = [None] * ctx.world_size
    dist.all_gather_object(out, value)
    return out


def mean_across(values: list[float], device=None) -> list[float]:
    """The mean over ranks of each of ``values`` (one all-reduce for the loss and every metric)."""
    if not context().distributed or not values:
        return values
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return (tensor / context().world_size).tolist()


def barrier() -> None:
    """Waits until every rank arrives (a merge after every shard is written)."""
    if context().distributed:
        import torch.distributed as dist

        dist.barrier()


def shutdown() -> None:
    """Leaves the process group (at the end of a command)."""
    import sys

    if "torch.distributed" not in sys.modules:  # never joined one (and no need to import torch to know)
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def resolve_strategy(strategy: str, world_size: int, launched_: bool) -> str:
    """``auto`` as ddp under a multi-process launch, none otherwise; ddp in a single process is none. ``none``
    over several processes (unsynchronised replicas) and fsdp outside a launch are refused."""
    if strategy == "auto":
        return "ddp" if world_size > 1 else "none"
    if strategy == "none" and world_size > 1:
        raise ValueError(f"distributed.strategy=none under {world_size} torchrun processes would train unsynchronised "
                         "replicas; use auto or ddp (or fsdp), or run one process")  # fmt: skip
    if strategy == "ddp" and world_size == 1:
        return "none"
    if strategy == "fsdp" and not launched_:
        raise ValueError("distributed.strategy=fsdp needs a process group: launch with torchrun (torchrun "
                         "--nproc_per_node=1 for a single process)")  # fmt: skip
    return strategy
