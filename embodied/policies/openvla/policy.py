"""OpenVLA-style vision-language-action policy (Kim et al. 2024): ``policy=openvla``.

An image encoder from the registry (default: OpenVLA's fused ``dinosiglip``) turns each camera image into patch
tokens; a 3-layer GELU MLP projects them into the language model's embedding space; a causal LM from
``transformers`` reads ``[BOS, image tokens, (proprio token), prompt]`` with the prompt
``In: What action should the robot take to {instruction}?\\nOut:`` and predicts the action as 7 tokens (one per
dimension, 256 bins, the last 256 ids of the vocabulary; see :mod:`.action_tokenizer`) followed by EOS. The loss
is next-token cross-entropy on the action tokens and EOS only; action-token accuracy and the L1 error of the
decoded actions are logged beside it.

Decoding (``decoding``):

- ``sequential`` (OpenVLA): one forward pass over the prompt, then one per action dimension through the KV cache,
  each step's argmax restricted to the 256 action ids (only their rows of the output head are multiplied).
  ``horizon`` > 1 decodes ``horizon * 7`` tokens this way.
- ``parallel`` (OpenVLA-OFT, Kim et al. 2025): ``horizon`` (K) actions of 7 dimensions in one forward pass. The
  prompt is followed by K*7 empty action slots (learned embeddings) that attend to the whole prompt and
  bidirectionally to each other; the prompt stays causal. ``action_head``: ``tokens`` (the LM head over the
  action ids at each slot, cross-entropy) or ``l1`` (an MLP with residual blocks maps each action's 7 slot
  hidden states to its 7 normalised values; loss mean |a_hat - a|).

Actions are normalised per dataset (q01/q99, gripper excluded); with a mixture of stores the statistics of each are
kept (``dataset_statistics.json`` in checkpoints, as OpenVLA) and ``unnorm_key`` picks one at inference.

Config: :mod:`.config`; the input sequence: :mod:`.sequence`; checkpoint files and LoRA surgery:
:mod:`.lora_checkpoint`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from embodied.features import INSTRUCTION, Feature
from embodied.policies.base import masked_mean, masked_sample_mean
from embodied.policies.camera_policy import CameraPolicy
from embodied.policies.openvla import lora_checkpoint
from embodied.policies.openvla.action_tokenizer import ActionTokenizer
from embodied.policies.openvla.config import (
    OPENVLA_ENCODER,
    VLAConfig,
    base_lm_reloaded,
    resolve_train_modes,
    validate,
)
from embodied.policies.openvla.language_model import (
    apply_lm_train_mode,
    base_model,
    build_language_model,
    load_tokenizer,
    text_vocab_size,
)
from embodied.policies.openvla.sequence import VLAInputs, assemble


class VLAPolicy(CameraPolicy):
    """See the module docstring; built from ``(config, features, stats)`` like every policy."""

    reads_pooled_features = False  # the LM reads every patch token, not the cached pooled vector
    reads_instruction = True  # the prompt is built from it

    def __init__(
        self,
        config: VLAConfig,
        features: Mapping[str, Feature],
        stats: Mapping[str, Mapping],
        checkpoint_dir=None,
    ):
        if config.encoder is None:
            config.encoder = dict(OPENVLA_ENCODER)
        resolve_train_modes(config)
        validate(config)
        if config.obs_keys is None:
            images = [k for k, f in features.items() if f.kind == "image"]
            config.obs_keys = images + (["proprio"] if config.use_proprio and "proprio" in features else [])
        super().__init__(config, features, stats, checkpoint_dir)
        if not self.image_keys:
            raise ValueError("policy=openvla needs at least one camera in the dataset (obs_keys with images)")
        saved = lora_checkpoint.saved_files(self.checkpoint_dir)
        self.tokenizer = load_tokenizer(config.lm, saved.get("tokenizer_dir"))
        self.vocab_size = text_vocab_size(self.tokenizer)
        # an adapters-only or quantised checkpoint lacks the base LM's weights: load them from lm.pretrained
        lm_config = None if base_lm_reloaded(config) else saved.get("lm_config")
        lm = build_language_model(config.lm, self.tokenizer, lm_config)
        self.lm = apply_lm_train_mode(lm, config.lm)
        hidden = int(base_model(self.lm).config.hidden_size)
        self.hidden_size = hidden
        self.action_tokenizers = {
            key: ActionTokenizer.from_stats(self.vocab_size, s["action"], n_bins=config.n_bins)
            for key, s in dataset_stats_by_key(self.dataset_stats).items()
        }
        vision = self.camera_encoder(self.image_keys[0]).dim
        mid = config.projector_hidden or 4 * vision
        self.projector = nn.Sequential(
            nn.Linear(vision, mid), nn.GELU(), nn.Linear(mid, hidden), nn.GELU(), nn.Linear(hidden, hidden)
        )
        if self.lowdim_keys:
            width = sum(int(self.features[k].shape[-1]) for k in self.lowdim_keys)
            self.proprio_projector = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        n_actions = config.horizon * self.action_dim
        if config.decoding == "parallel":
            self.action_slots = nn.Parameter(torch.randn(n_actions, hidden) * 0.02)
            if config.action_head == "l1":
                self.action_head = L1RegressionHead(
                    hidden * self.action_dim, config.head_hidden or hidden, self.action_dim, config.head_blocks
                )
        self._prompt_cache: dict[str, list[int]] = {}

    # ------------------------------------------------------------------ sequences
    @property
    def action_token_ids(self) -> range:
        """The 256 (``n_bins``) ids at the end of the text vocabulary that stand for action bins."""
        first = self.vocab_size - self.config.n_bins
        return range(first, self.vocab_size)

    def prompt_ids(self, instruction: str) -> list[int]:
        """The prompt's token ids for one instruction (OpenVLA lower-cases it), without BOS; cached."""
        ids = self._prompt_cache.get(instruction)
        if ids is None:
            text = self.config.prompt.format(instruction=instruction.strip().lower().rstrip("."))
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            self._prompt_cache[instruction] = ids
        return ids

    def build_inputs(
        self, obs: Mapping[str, Any], instructions: Sequence[str], action_ids: torch.Tensor | None = None
    ) -> VLAInputs:
        """One left-padded batch of sequences (:func:`.sequence.assemble`): ``[BOS, image tokens, proprio,
        prompt]`` followed, for sequential decoding, by the action ids and EOS when ``action_ids`` (B, horizon * 7)
        are given (training), or, for parallel decoding, by the empty action slots."""
        return assemble(
            self.lm.get_input_embeddings(),
            self.vision_tokens(obs),
            self.proprio_token(obs),
            [self.prompt_ids(text) for text in instructions],
            self.tokenizer.bos_token_id,
            self.tokenizer.eos_token_id,
            action_ids,
            self.action_slots if self.config.decoding == "parallel" else None,
        )

    def vision_tokens(self, obs: Mapping[str, Any]) -> torch.Tensor:
        """Every camera's patch tokens at the (single) observed step, projected: (B, N_total, H)."""
        tokens = [self.camera_encoder(key)(obs[key][:, -1]).tokens for key in self.image_keys]
        return self.projector(torch.cat(tokens, dim=1))

    def proprio_token(self, obs: Mapping[str, Any]) -> torch.Tensor | None:
        """The proprio projected to one token (B, 1, H), when the policy reads proprio."""
        if not self.lowdim_keys:
            return None
        values = torch.cat([obs[key][:, -1] for key in self.lowdim_keys], -1)
        return self.proprio_projector(values).unsqueeze(1)

    # ------------------------------------------------------------------ training
    def compute_loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """Cross-entropy on the action tokens and EOS (L1 on normalised actions for the L1 head), with action-token
        accuracy and the L1 error of the decoded actions as metrics."""
        obs = self.prepare_obs(batch)
        instructions = obs[INSTRUCTION]
        actions = batch["action"].to(self.device).float()  # (B, horizon, A), raw
        keys = self._dataset_keys(batch, len(instructions))
        normalized = self._per_dataset(keys, actions, lambda tok, a: tok.normalize(a))
        target_ids = self._per_dataset(keys, actions, lambda tok, a: tok.encode(a)).flatten(1)  # (B, horizon * A)
        if self.config.decoding == "parallel":
            inputs = self.build_inputs(obs, instructions)
            hidden = self.decoder_hidden(inputs)[:, -target_ids.shape[1] :]  # slot hidden states
            if self.config.action_head == "l1":  # both heads leave edge-padded steps (past an episode's end) out
                loss = masked_mean((self.regress(hidden) - normalized).abs(), batch["action_is_pad"].to(self.device))
                return loss, {"l1": loss.item()}
            logits = self.lm_head(hidden)
            error = F.cross_entropy(logits.flatten(0, 1).float(), target_ids.flatten(), reduction="none")
            loss = masked_mean(error.view(normalized.shape), batch["action_is_pad"].to(self.device))
            pred_ids = self.constrained_argmax(hidden)
        else:
            inputs = self.build_inputs(obs, instructions, target_ids)
            n_targets = target_ids.shape[1] + 1  # actions + EOS
            hidden = self.decoder_hidden(inputs)[:, -n_targets - 1 : -1]  # the positions that predict them
            logits = self.lm_head(hidden)
            targets = inputs.labels[:, -n_targets:]
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
            logits = logits[:, :-1]  # metrics on action tokens only
            pred_ids = self.constrained_argmax(hidden[:, :-1])
        accuracy = (logits.argmax(-1) == target_ids).float().mean()
        decoded = self._normalized_from_ids(pred_ids, keys)
        l1 = (decoded - normalized).abs().mean()
        return loss, {"action_accuracy": accuracy.item(), "action_l1": l1.item()}

    def chunk_log_likelihood(self, batch: Mapping[str, Any], generator: torch.Generator) -> torch.Tensor:
        """The mean log-probability of each chunk's action tokens under teacher forcing (with EOS when decoding
        autoregressively; padded steps left out): the exact log-likelihood, divided by the token count so that one
        DPO ``beta`` suits every policy. The L1 head: minus its mean error. ``generator`` is unused."""
        obs = self.prepare_obs(batch)
        instructions = obs[INSTRUCTION]
        actions = batch["action"].to(self.device).float()
        keys = self._dataset_keys(batch, len(instructions))
        target_ids = self._per_dataset(keys, actions, lambda tok, a: tok.encode(a)).flatten(1)
        is_pad = batch["action_is_pad"].to(self.device)
        valid = (~is_pad).repeat_interleave(self.action_dim, dim=1).float()  # (B, horizon * A), time-major
        if self.config.decoding == "parallel":
            hidden = self.decoder_hidden(self.build_inputs(obs, instructions))[:, -target_ids.shape[1] :]
            if self.config.action_head == "l1":
                normalized = self._per_dataset(keys, actions, lambda tok, a: tok.normalize(a))
                return -masked_sample_mean((self.regress(hidden) - normalized).abs(), is_pad)
            targets = target_ids
        else:
            inputs = self.build_inputs(obs, instructions, target_ids)
            n_targets = target_ids.shape[1] + 1  # actions + EOS
            hidden = self.decoder_hidden(inputs)[:, -n_targets - 1 : -1]
            targets = inputs.labels[:, -n_targets:]
            valid = torch.cat([valid, valid.new_ones(len(valid), 1)], 1)
        logits = self.lm_head(hidden).float()
        log_p = -F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view(targets.shape)
        return (log_p * valid).sum(1) / valid.sum(1).clamp(min=1)

    def decoder_hidden(self, inputs: VLAInputs, **kwargs) -> torch.Tensor:
        """The decoder's last hidden states (B, L, H) for a batch of sequences."""
        return self.decoder(
            inputs_embeds=inputs.inputs_embeds,
            attention_mask=inputs.attention_mask,
            position_ids=inputs.position_ids,
            use_cache=False,
            **kwargs,
        ).last_hidden_state

    @property
    def decoder(self) -> nn.Module:
        """The LM's transformer without its output head (``LlamaModel`` inside ``LlamaForCausalLM``)."""
        return base_model(self.lm).get_decoder()

    def lm_head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over the whole vocabulary."""
        return base_model(self.lm).get_output_embeddings()(hidden)

    def constrained_argmax(self, hidden: torch.Tensor) -> torch.Tensor:
        """Argmax over the 256 action ids only, multiplying just their rows of the output head: (...) ids."""
        head = base_model(self.lm).get_output_embeddings()
        ids = self.action_token_ids
        weight = head.weight[ids.start : ids.stop]
        bias = head.bias[ids.start : ids.stop] if head.bias is not None else None
        return F.linear(hidden.to(weight.dtype), weight, bias).argmax(-1) + ids.start

    def regress(self, slot_hidden: torch.Tensor) -> torch.Tensor:
        """(B, K * A, H) slot hidden states -> (B, K, A) normalised actions (the L1 head)."""
        batch = slot_hidden.shape[0]
        return self.action_head(slot_hidden.float().reshape(batch, self.config.horizon, -1))

    # ------------------------------------------------------------------ inference
    def predict_chunk(self, obs: dict[str, Any]) -> torch.Tensor:
        """Normalised actions (B, horizon, A) in the action tokenizer's [-1, 1] (q01/q99) space of ``unnorm_key``'s
        statistics; :meth:`unnormalize_actions` maps them back."""
        instructions = obs.get(INSTRUCTION)
        batch = next(v for k, v in obs.items() if k in self.image_keys).shape[0]
        if instructions is None or len(instructions) != batch:
            raise ValueError(
                f"policy=openvla needs one instruction per observation: obs['{INSTRUCTION}'] = a list of "
                f"{batch} strings (got {instructions!r})"
            )
        tokenizer = self.action_tokenizers[self.resolve_unnorm_key()]
        if self.config.decoding == "parallel":
            inputs = self.build_inputs(obs, instructions)
            hidden = self.decoder_hidden(inputs)[:, -self.config.horizon * self.action_dim :]
            if self.config.action_head == "l1":
                return self.regress(hidden).clamp(-1.0, 1.0)
            ids = self.constrained_argmax(hidden)
        else:
            ids = self.generate_action_ids(self.build_inputs(obs, instructions), self.config.horizon * self.action_dim)
        return tokenizer.normalize(tokenizer.decode(ids.view(batch, self.config.horizon, self.action_dim)).float())

    def unnormalize_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """The action tokenizer's inverse for ``unnorm_key``'s statistics (the gripper only clipped)."""
        return self.action_tokenizers[self.resolve_unnorm_key()].unnormalize(actions).float()

    @torch.no_grad()
    def generate_action_ids(self, inputs: VLAInputs, n_tokens: int) -> torch.Tensor:
        """Greedy decoding of ``n_tokens`` action ids with a KV cache: one forward pass over the prompt, then one
        per token; only the action ids can be chosen. Returns (B, n_tokens)."""
        from transformers import DynamicCache

        mask, positions = inputs.attention_mask, inputs.position_ids
        cache = {self._cache_argument: DynamicCache()}  # filled in place by each forward pass
        out = self.decoder(
            inputs_embeds=inputs.inputs_embeds, attention_mask=mask, position_ids=positions, use_cache=True, **cache
        )
        embed = self.lm.get_input_embeddings()
        chosen = []
        for index in range(n_tokens):
            ids = self.constrained_argmax(out.last_hidden_state[:, -1])
            chosen.append(ids)
            if index == n_tokens - 1:
                break
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], 1)
            positions = positions[:, -1:] + 1
            out = self.decoder(
                inputs_embeds=embed(ids).unsqueeze(1).to(inputs.inputs_embeds.dtype),
                attention_mask=mask,
                position_ids=positions,
                use_cache=True,
                **cache,
            )
        return torch.stack(chosen, 1)

    @functools.cached_property
    def _cache_argument(self) -> str:
        """transformers 5.x names the KV cache argument ``cache``; earlier versions ``past_key_values``."""
        import inspect

        parameters = inspect.signature(self.decoder.forward).parameters
        return "cache" if "cache" in parameters else "past_key_values"

    def resolve_unnorm_key(self) -> str:
        """Whose statistics un-normalise actions: ``unnorm_key``, or the only training dataset."""
        keys = sorted(self.action_tokenizers)
        key = self.config.unnorm_key
        if key is None:
            if len(keys) > 1:
                raise ValueError(
                    f"this policy was trained on several datasets {keys}: pass policy.unnorm_key=<one of them> to "
                    "choose whose action statistics un-normalise its actions"
                )
            return keys[0]
        if key not in self.action_tokenizers:
            raise KeyError(f"policy.unnorm_key={key!r} is not one of the training datasets {keys}")
        return key

    # ------------------------------------------------------------------ helpers
    def image_encoders(self) -> dict:
        """None for the feature cache: the VLA reads patch tokens, never the cached pooled vectors."""
        return {}  # the VLA reads patch tokens, never the feature cache's pooled vectors

    def _dataset_keys(self, batch: Mapping[str, Any], n: int) -> list[str]:
        keys = batch.get("dataset")
        if len(self.action_tokenizers) == 1:  # one set of statistics: it applies to every sample
            return [next(iter(self.action_tokenizers))] * n
        if keys is None:
            raise ValueError("a batch for a multi-dataset VLA needs batch['dataset'] (its store's key)")
        unknown = set(keys) - set(self.action_tokenizers)
        if unknown:
            known = sorted(self.action_tokenizers)
            raise KeyError(f"batch datasets {sorted(unknown)} have no statistics; known {known}")
        return list(keys)

    def _normalized_from_ids(self, ids: torch.Tensor, keys: Sequence[str]) -> torch.Tensor:
        """Predicted ids (B, horizon * A) -> normalised actions (B, horizon, A) (each sample's own statistics)."""
        ids = ids.view(ids.shape[0], self.config.horizon, self.action_dim)
        return self._per_dataset(keys, ids, lambda tok, i: tok.normalize(tok.decode(i))).float()

    def _per_dataset(self, keys: Sequence[str], values: torch.Tensor, fn) -> torch.Tensor:
        """``fn(tokenizer, rows)`` applied to the rows of each dataset at once, reassembled in batch order."""
        groups: dict[str, list[int]] = {}
        for index, key in enumerate(keys):
            groups.setdefault(key, []).append(index)
        if len(groups) == 1:
            return fn(self.action_tokenizers[keys[0]], values)
        parts = {key: fn(self.action_tokenizers[key], values[rows]) for key, rows in groups.items()}
        first = next(iter(parts.values()))
        out = first.new_empty((len(keys), *first.shape[1:]))
        for key, rows in groups.items():
            out[rows] = parts[key]
        return out

    def fsdp_units(self) -> list[nn.Module]:
        """What ``distributed.strategy=fsdp`` shards block by block: the LM's decoder layers and the vision towers'
        layers (see :func:`embodied.training.parallel.transformer_blocks`)."""
        from embodied.training.parallel import transformer_blocks

        return transformer_blocks(self)

    # ------------------------------------------------------------------ checkpoints (see .lora_checkpoint)
    def save_extra_files(self, directory: Path) -> None:
        """``language_model.json``, ``tokenizer/``, ``dataset_statistics.json`` and, with LoRA, ``lm_adapter/``."""
        by_key = dataset_stats_by_key(self.dataset_stats)
        statistics = {key: {**by_key[key], "action": tok.to_dict()} for key, tok in self.action_tokenizers.items()}
        lora_checkpoint.save_files(self, directory, statistics)

    def save_weights(self, path: Path) -> None:
        """Merged (see :func:`.lora_checkpoint.merged_weights`), else every weight but the reloaded base LM's."""
        if not lora_checkpoint.merged(self.config):
            return super().save_weights(path)
        from safetensors.torch import save_file

        save_file(lora_checkpoint.merged_weights(self), str(path))

    def reloaded_state_keys(self) -> list[str]:
        """The pretrained base LM's weights under adapters-only LoRA or quantisation (reloaded from lm.pretrained)."""
        return lora_checkpoint.lora_base_keys(self)

    def saved_config(self) -> dict:
        """The config as saved: a merged checkpoint's LM is a plain one."""
        return lora_checkpoint.saved_policy_config(self, super().saved_config())


class L1RegressionHead(nn.Module):
    """OpenVLA-OFT's action head: an MLP with residual blocks from one action's slot hidden states (A * H) to its A
    normalised values."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, blocks: int = 2):
        super().__init__()
        self.inp = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden), nn.ReLU())
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.ReLU()) for _ in range(blocks)
        )
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)
        for block in self.blocks:
            x = x + block(x)
        return self.out(x)


def dataset_stats_by_key(stats: Mapping[str, Any]) -> dict[str, Mapping]:
    """Per-dataset statistics: ``stats["datasets"]`` (a mixture, keyed by store name) or the one set as
    ``default``."""
    if "datasets" in stats and stats["datasets"]:
        return dict(stats["datasets"])
    return {"default": stats}
