"""The model as the Trainer runs it: alone, replicated with DDP, or sharded with FSDP2.

DDP and FSDP act through ``forward()`` (DDP prepares its gradient all-reduce there, FSDP gathers parameters in
forward hooks), while our models train through ``compute_loss(batch)``; :class:`LossModule` makes the loss the
forward pass, so either wrapper sees it. Checkpoints are always consolidated, full, unprefixed state dicts: the
same files resume on any number of ranks (an FSDP run's optimiser state is keyed by parameter name, so it also
resumes with another sharding), and the exported policy loads anywhere with ``load_policy``.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
from torch import nn

from embodied.policies.base import load_state_except_reloaded, reloaded_state_keys
from embodied.training.distributed import Context

PREFIX = "policy."


class LossModule(nn.Module):
    """``forward(batch) = model.compute_loss(batch)``, so DDP's and FSDP's forward hooks cover the loss."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.policy = model

    def forward(self, batch):
        return self.policy.compute_loss(batch)


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks of every ``transformers`` model inside ``model`` (the classes each names in
    ``_no_split_modules``: decoder layers, vision encoder layers), deepest first, so nested units are sharded
    before the blocks that hold them."""
    names = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or ())
    found = [(name, m) for name, m in model.named_modules() if type(m).__name__ in names]
    return [m for _, m in sorted(found, key=lambda item: -item[0].count("."))]


def unused_parameters(model: nn.Module, batch) -> list[str]:
    """Names of trainable parameters one training pass on ``batch`` leaves without a gradient (DDP must be told,
    or it waits for their gradients forever). Side-effect free: gradients, buffers and RNG are as before."""
    from embodied.runtime import rng_state, set_rng_state

    rng, buffers = rng_state(), {name: b.detach().clone() for name, b in model.named_buffers()}
    was_training = model.training
    try:
        model.train()
        model.zero_grad(set_to_none=True)
        loss, _ = model.compute_loss(batch)
        loss.backward()
        return [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])
        set_rng_state(rng)


def meta_copy(model: nn.Module) -> nn.Module:
    """A deep copy whose parameters and buffers are on the meta device (no memory), made without first copying
    the weights: each tensor is mapped to an empty meta tensor before ``deepcopy`` reaches it."""
    memo: dict = {}
    for parameter in model.parameters():
        memo[id(parameter)] = nn.Parameter(torch.empty_like(parameter, device="meta"), parameter.requires_grad)
    for buffer in model.buffers():
        memo[id(buffer)] = torch.empty_like(buffer, device="meta")
    return copy.deepcopy(model, memo)


def fsdp_units(model: nn.Module) -> list[nn.Module] | None:
    """The blocks FSDP shards one by one (``model.fsdp_units()``; None: the model does not support FSDP)."""
    units = getattr(model, "fsdp_units", None)
    return units() if callable(units) else None


class Parallel:
    """``model`` wrapped for ``strategy`` (none | ddp | fsdp) on this rank; see the module docstring."""

    def __init__(self, model: nn.Module, strategy: str, ctx: Context, find_unused_parameters: bool = False,
                 probe_batch=None):  # fmt: skip
        self.model, self.strategy, self.ctx = model, strategy, ctx
        self.loss_module = LossModule(model)
        self._template = None
        device = next(model.parameters()).device
        if strategy == "ddp":
            from torch.nn.parallel import DistributedDataParallel

            if not find_unused_parameters and probe_batch is not None:
                unused = unused_parameters(model, probe_batch)
                if unused and ctx.is_main:
                    print(
                        f"ddp: {len(unused)} trainable tensors take no part in the loss ({', '.join(unused[:3])}"
                        f"{', ...' if len(unused) > 3 else ''}); finding unused parameters each step",
                        flush=True,
                    )
                find_unused_parameters = bool(unused)
            ids = [device.index] if device.type == "cuda" else None
            self.runner = DistributedDataParallel(self.loss_module, device_ids=ids,
                                                  find_unused_parameters=find_unused_parameters)  # fmt: skip
        elif strategy == "fsdp":
            from torch.distributed.fsdp import fully_shard

            units = fsdp_units(model)
            if units is None:
                raise ValueError(f"{type(model).__name__} does not support FSDP; use distributed.strategy=ddp")
            if ctx.is_main:  # a weightless copy to export through (it receives the gathered weights)
                self._template = meta_copy(model)
            for unit in units:
                fully_shard(unit)
            fully_shard(self.loss_module)
            self.runner = self.loss_module
        elif strategy == "none":
            self.runner = self.loss_module
        else:
            raise ValueError(f"unknown distribution strategy {strategy!r}")

    @property
    def sharded(self) -> bool:
        """Whether the parameters are sharded (collectives are needed to read them)."""
        return self.strategy == "fsdp"

    def compute_loss(self, batch):
        """The loss (and metrics) through the wrapper's forward."""
        return self.runner(batch)

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Accumulate gradients locally (every micro-batch but the last)."""
        if self.strategy == "ddp":
            with self.runner.no_sync():
                yield
        elif self.strategy == "fsdp":
            self.runner.set_requires_gradient_sync(False)
            try:
                yield
            finally:
                self.runner.set_requires_gradient_sync(True)
        else:
            yield

    def clip_gradients(self, max_norm: float) -> float:
        """Clips the global gradient norm to ``max_norm`` (0: none); returns the norm before clipping, the same on
        every rank (gradients are already averaged; FSDP's norm is reduced over the shards)."""
        parameters = [p for p in self.model.parameters() if p.grad is not None]
        if not parameters:
            return 0.0
        norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm if max_norm > 0 else float("inf"))
        return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)

    # ------------------------------------------------------------------ consolidated state
    def model_state(self) -> dict:
        """The full state dict (FSDP: gathered on every rank, held on rank 0 only, on the CPU), less the weights the
        model reloads whenever it is built (``reloaded_state_keys``: a frozen pretrained base, possibly quantised)."""
        if not self.sharded:
            reloaded = set(reloaded_state_keys(self.model))
            return {k: v for k, v in self.model.state_dict().items() if k not in reloaded}
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(self.loss_module, options=StateDictOptions(full_state_dict=True,
                                                                                  cpu_offload=True))  # fmt: skip
        return {key.removeprefix(PREFIX): value for key, value in state.items()}

    def load_model_state(self, state: dict) -> None:
        """Loads a full state dict (every rank passes the same one)."""
        if not self.sharded:
            load_state_except_reloaded(self.model, state, "the training state")
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(self.loss_module, {PREFIX + k: v for k, v in state.items()},
                             options=StateDictOptions(full_state_dict=True))  # fmt: skip

    def optimizer_state(self, optimizer) -> dict:
        """The optimiser's full state (FSDP: keyed by parameter name, on rank 0)."""
        if not self.sharded:
            return optimizer.state_dict()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        state = get_optimizer_state_dict(self.loss_module, optimizer,
                                         options=StateDictOptions(full_state_dict=True, cpu_offload=True))  # fmt: skip
        return {"fsdp_full_state": state}

    def load_optimizer_state(self, optimizer, state: dict) -> None:
        """Loads what :meth:`optimizer_state` saved; a checkpoint of the other kind is refused naming the fix."""
        if self.sharded != ("fsdp_full_state" in state):
            saved = "fsdp" if "fsdp_full_state" in state else "ddp or none"
            raise ValueError(f"the checkpoint's optimiser state was written with distributed.strategy={saved}; "
                             f"resume with that strategy (now {self.strategy})")  # fmt: skip
        if not self.sharded:
            optimizer.load_state_dict(state)
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        # strict=False: parameters that never received a gradient (unused by the loss) have no optimiser state
        set_optimizer_state_dict(self.loss_module, optimizer, state["fsdp_full_state"],
                                 options=StateDictOptions(full_state_dict=True, strict=False))  # fmt: skip

    @contextlib.contextmanager
    def export_model(self, state: dict | None = None) -> Iterator[nn.Module | None]:
        """A plain module with the full weights for ``save_pretrained`` (None off rank 0). FSDP: the weightless
        copy made before sharding receives ``state`` (from :meth:`model_state`) and is emptied again after."""
        if not self.sharded:
            yield self.model
            return
        if self._template is None:
            yield None
            return
        self._template.load_state_dict(state, assign=True)
        try:
            yield self._template
        finally:
            self._template.to("meta")
