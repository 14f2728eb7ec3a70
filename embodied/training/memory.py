"""Will this run fit in memory? An estimate before the first step, and the micro-batch that fits.

The kernel's OOM killer gives no message; a CUDA OOM comes after minutes of setup. So before training, the policy
runs one real forward pass at batch 1 and 2 while :func:`torch.autograd.graph.saved_tensors_hooks` records every
tensor kept for the backward pass (parameters excluded): that measures the activation memory per sample for this
policy, image size and fine-tuning mode exactly as autograd will hold it. Gradients and AdamW's two moments follow
from the trainable parameter count. If the whole batch does not fit, the batch is split into micro-batches whose
gradients accumulate (the same effective batch); if not even one sample fits, training stops with the figures and
the overrides that would fit. The probe restores the RNG and every buffer it touched (BatchNorm statistics), so
training is the same as without it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

GiB = 1 << 30
# Peak memory during backward exceeds what forward saved: gradients of activations and kernels' workspaces live
# beside the saved tensors. Checked on the CPU with policy=openvla (dinosiglip at 224 px, all weights training):
# batch 16 in one pass estimated 10.8 GiB, peak RSS 11.3 GB in all; batch 64 as 3 x 22 estimated 14.1, peak 13.4.
BACKWARD_FACTOR = 1.6
# Memory the estimate must leave free: other processes, the allocator's fragmentation, DataLoader copies.
HEADROOM = 0.85


class InsufficientMemory(RuntimeError):
    """Training cannot fit in the memory of the device, even one sample at a time."""


@dataclass
class MemoryEstimate:
    """Bytes a training step needs beyond what the process already holds (the weights, the data)."""

    weights: int  # parameters and buffers (already allocated when measured)
    gradients: int  # one per trainable parameter
    optimizer: int  # AdamW: two fp32 moments per trainable parameter
    ema: int  # the averaged copy of every parameter and buffer
    fixed_activations: int  # saved for backward whatever the batch size
    activations_per_sample: int  # saved for backward per sample of the batch
    encoder_activations_per_sample: int  # the image encoders' share (what freezing them saves)
    encoder_trainable: int  # trainable parameters inside image encoders

    def needed(self, micro_batch: int) -> int:
        """Bytes a step needs at ``micro_batch`` samples per forward/backward pass."""
        activations = self.fixed_activations + micro_batch * self.activations_per_sample
        return int(self.gradients + self.optimizer + self.ema + BACKWARD_FACTOR * activations)

    def needed_with_frozen_encoders(self, micro_batch: int) -> int:
        """The same with the image encoders frozen (no activations, gradients or moments of theirs)."""
        saved = 4 * 3 * self.encoder_trainable  # gradient + two moments per encoder parameter
        activations = micro_batch * (self.activations_per_sample - self.encoder_activations_per_sample)
        return int(self.gradients + self.optimizer + self.ema - saved + BACKWARD_FACTOR * max(activations, 0))


@dataclass
class MemoryPlan:
    """What training will do: ``micro_batch_size`` samples per forward/backward, ``accumulation`` of them per
    optimiser step (``batch_size`` = the effective batch)."""

    batch_size: int  # the effective batch of an optimiser step
    micro_batch_size: int  # samples per forward/backward pass
    needed: int  # bytes at that micro-batch
    available: int  # bytes free when measured
    device: str  # where training runs

    @property
    def accumulation(self) -> int:
        """Micro-batches per optimiser step."""
        return math.ceil(self.batch_size / self.micro_batch_size)

    def describe(self) -> str:
        """The one line training prints about it."""
        base = f"memory: ~{self.needed / GiB:.1f} GiB of {self.available / GiB:.1f} GiB available ({self.device})"
        if self.accumulation == 1:
            return f"{base} for batch {self.batch_size} in one pass"
        return (
            f"{base} with {self.accumulation} micro-batches of {self.micro_batch_size} per step (gradient "
            f"accumulation: the effective batch stays {self.batch_size}; micro_batch_size= sets it)"
        )


def available_memory(device: torch.device) -> int:
    """Bytes free for this process: CUDA's free memory, or on the CPU the kernel's MemAvailable (and the cgroup's
    limit minus its usage, when a container sets one)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    candidates = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:
            candidates.append(int(limit) - usage)
    if not candidates:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    return max(min(candidates), 0)


def estimate(policy, batch_of, ema: bool, autocast) -> MemoryEstimate:
    """Measures what training ``policy`` (any model with ``compute_loss``) needs. ``batch_of(n)`` returns a real
    batch of ``n`` samples."""
    params = list(policy.parameters())
    trainable = [p for p in params if p.requires_grad]
    weight_bytes = sum(p.numel() * p.element_size() for p in params)
    weight_bytes += sum(b.numel() * b.element_size() for b in policy.buffers())
    grad_bytes = sum(p.numel() * p.element_size() for p in trainable)
    # image encoders (a policy's ``encoders``): their share of the activations is what freezing them would save
    encoders = list(getattr(policy, "encoders", {}).values())
    encoder_trainable = sum(p.numel() for e in encoders for p in e.parameters() if p.requires_grad)
    # batches of 2 and 4 (BatchNorm refuses a batch of one): the difference is what each sample adds
    small, small_encoder = _saved_bytes(policy, batch_of(2), autocast, encoders)
    large, large_encoder = _saved_bytes(policy, batch_of(4), autocast, encoders)
    per_sample = max(large - small, 0) // 2
    return MemoryEstimate(
        weights=weight_bytes,
        gradients=grad_bytes,
        optimizer=2 * 4 * sum(p.numel() for p in trainable),
        ema=weight_bytes if ema else 0,
        fixed_activations=max(small - 2 * per_sample, 0),
        activations_per_sample=per_sample,
        encoder_activations_per_sample=max(large_encoder - small_encoder, 0) // 2,
        encoder_trainable=encoder_trainable,
    )


def plan(
    estimate: MemoryEstimate, batch_size: int, available: int, device: torch.device, requested: int | None = None
) -> MemoryPlan:
    """The micro-batch to train with: ``requested``, else the whole batch if it fits, else the largest that does.

    Raises InsufficientMemory with the figures and what would fit when not even one sample does (or when the
    requested micro-batch does not)."""
    budget = int(available * HEADROOM)
    if requested is not None:
        size = min(requested, batch_size)
        if estimate.needed(size) > budget:
            raise InsufficientMemory(_message(estimate, size, budget, device, requested=True))
        return MemoryPlan(batch_size, size, estimate.needed(size), available, str(device))
    if estimate.needed(batch_size) <= budget:
        return MemoryPlan(batch_size, batch_size, estimate.needed(batch_size), available, str(device))
    per_sample = BACKWARD_FACTOR * estimate.activations_per_sample
    room = budget - estimate.needed(0)
    fits = int(room // per_sample) if per_sample > 0 and room > 0 else 0
    if fits < 1:
        raise InsufficientMemory(_message(estimate, 1, budget, device))
    # equal micro-batches: the fewest passes whose size fits
    passes = math.ceil(batch_size / fits)
    size = math.ceil(batch_size / passes)
    return MemoryPlan(batch_size, size, estimate.needed(size), available, str(device))


def _message(estimate: MemoryEstimate, size: int, budget: int, device: torch.device, requested: bool = False) -> str:
    parts = (
        f"gradients {estimate.gradients / GiB:.1f} GiB, AdamW moments {estimate.optimizer / GiB:.1f} GiB"
        + (f", EMA {estimate.ema / GiB:.1f} GiB" if estimate.ema else "")
        + f", activations {BACKWARD_FACTOR * estimate.activations_per_sample / GiB:.2f} GiB per sample"
    )
    what = f"micro_batch_size={size}" if requested else "even one sample per pass"
    lines = [
        f"training does not fit in memory: {what} needs ~{estimate.needed(size) / GiB:.1f} GiB ({parts}; the "
        f"weights, {estimate.weights / GiB:.1f} GiB, are already loaded), and {budget / GiB:.1f} GiB of {device} "
        "memory can be used."
    ]
    options = []
    if estimate.encoder_trainable and estimate.needed_with_frozen_encoders(1) <= budget:
        options.append(
            f"policy.encoder.train=frozen (~{estimate.needed_with_frozen_encoders(1) / GiB:.1f} GiB at one sample "
            "per pass) or "
            "policy.encoder.train=lora"
        )
    if requested and estimate.needed(1) <= budget:
        options.append("a smaller micro_batch_size, or leave it unset to pick one that fits")
    options += ["a smaller policy.encoder.image_size", "a device with more memory (device=cuda)"]
    lines.append("Options: " + "; ".join(options) + ".")
    return " ".join(lines)


def _saved_bytes(policy, batch: Mapping[str, Any], autocast, encoders) -> tuple[int, int]:
    """(bytes autograd saves for backward in one training forward pass, the share saved inside ``encoders``),
    parameters excluded; side-effect free (RNG, buffers and gradients are as before)."""
    from embodied.runtime import rng_state, set_rng_state

    parameter_storages = {p.untyped_storage().data_ptr() for p in policy.parameters()}
    seen: dict[int, int] = {}
    inside = {"depth": 0}
    encoder_storages: set[int] = set()

    def pack(tensor: torch.Tensor):
        try:
            storage = tensor.untyped_storage()
        except (RuntimeError, NotImplementedError):  # e.g. sparse or meta tensors
            return tensor
        key = storage.data_ptr()
        if key not in parameter_storages and key not in seen:
            seen[key] = storage.nbytes()
            if inside["depth"]:
                encoder_storages.add(key)
        return tensor

    def enter(module, args):
        inside["depth"] += 1

    def leave(module, args, output):
        inside["depth"] -= 1

    hooks = [h for e in encoders for h in (e.register_forward_pre_hook(enter), e.register_forward_hook(leave))]
    buffers = {name: b.detach().clone() for name, b in policy.named_buffers()}
    state = rng_state()
    was_training = policy.training
    policy.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), autocast:
            loss, _ = policy.compute_loss(batch)
        del loss
    finally:
        for hook in hooks:
            hook.remove()
        with torch.no_grad():
            for name, value in policy.named_buffers():
                value.copy_(buffers[name])
        set_rng_state(state)
        policy.train(was_training)
    return sum(seen.values()), sum(seen[k] for k in encoder_storages)
