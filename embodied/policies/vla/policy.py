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

Checkpoints add to the common files: ``language_model.json`` (the LM's config, to rebuild it offline),
``tokenizer/``, ``dataset_statistics.json`` and, with LoRA, ``lm_adapter/`` (peft's adapter files). With
``lm.train=lora`` and a ``pretrained`` LM, ``save_lm: adapters`` leaves the base LM's weights out of
``model.safetensors`` (they are reloaded from ``lm.pretrained``); ``merged`` folds the adapters into the weights
and saves a plain model.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from embodied.features import Feature
from embodied.policies.base import PolicyConfig, masked_mean
from embodied.policies.observations import CameraPolicy
from embodied.policies.vla.action_tokenizer import ActionTokenizer
from embodied.policies.vla.language_model import (
    OPENVLA_PROMPT,
    LanguageModelConfig,
    apply_lm_train_mode,
    base_model,
    build_language_model,
    check_lm_config,
    lm_config_dict,
    load_tokenizer,
    text_vocab_size,
)

OPENVLA_ENCODER = {"name": "dinosiglip"}
DECODINGS = ("sequential", "parallel")
ACTION_HEADS = ("tokens", "l1")

# what each position of an input sequence holds (``VLAInputs.kinds``)
PAD, BOS, IMAGE, PROPRIO, TEXT, ACTION, EOS, SLOT = range(8)


@dataclass
class VLAConfig(PolicyConfig):
    name: str = "openvla"
    n_obs_steps: int = 1
    horizon: int = 1  # actions predicted per call (parallel decoding: the chunk K)
    n_action_steps: int = 1
    obs_keys: list[str] | None = None  # null: every camera, and proprio when use_proprio
    normalization: dict[str, str] = field(default_factory=lambda: {"proprio": "min_max", "action": "identity"})
    encoder: Any = None  # validated by the encoder's own schema; null: OpenVLA's dinosiglip
    share_encoder: bool = True  # one vision backbone for every camera (OpenVLA-OFT)
    projector_hidden: int | None = None  # null: 4 x the vision width (OpenVLA's fused-backbone projector)
    lm: LanguageModelConfig = field(default_factory=LanguageModelConfig)
    prompt: str = OPENVLA_PROMPT
    decoding: str = "sequential"  # sequential | parallel
    action_head: str = "tokens"  # tokens | l1 (l1: parallel decoding only)
    head_hidden: int | None = None  # l1 head width; null: the LM's hidden size
    head_blocks: int = 2  # l1 head residual blocks
    use_proprio: bool = False  # proprio as one extra token after the image tokens (OpenVLA-OFT)
    n_bins: int = 256
    unnorm_key: str | None = None  # which dataset's statistics un-normalise actions; null: the only one
    save_lm: str = "adapters"  # lm.train=lora: adapters (base reloaded from lm.pretrained) | merged


class VLAInputs(dict):
    """``inputs_embeds`` (B, L, H), ``attention_mask`` (B, L) (or a 4-D float mask for parallel decoding),
    ``position_ids`` (B, L), ``kinds`` (B, L) (PAD, BOS, IMAGE, ...), ``input_ids`` (B, L) (0 where not a token)
    and ``labels`` (B, L): the target id at action and EOS positions, -100 elsewhere. Sequences are left-padded,
    so every sample's action part ends at the last position."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class VLAPolicy(CameraPolicy):
    """See the module docstring; built from ``(config, features, stats)`` like every policy."""

    reads_pooled_features = False  # the LM reads every patch token, not the cached pooled vector

    def __init__(
        self,
        config: VLAConfig,
        features: Mapping[str, Feature],
        stats: Mapping[str, Mapping],
        encoder_configs: Mapping[str, dict] | None = None,
        saved: Mapping[str, Any] | None = None,
    ):
        if config.encoder is None:
            config.encoder = dict(OPENVLA_ENCODER)
        resolve_train_modes(config)
        validate(config)
        if config.obs_keys is None:
            images = [k for k, f in features.items() if f.kind == "image"]
            config.obs_keys = images + (["proprio"] if config.use_proprio and "proprio" in features else [])
        super().__init__(config, features, stats, encoder_configs)
        if not self.image_keys:
            raise ValueError("policy=openvla needs at least one camera in the dataset (obs_keys with images)")
        saved = dict(saved or {})
        self.tokenizer = load_tokenizer(config.lm, saved.get("tokenizer_dir"))
        self.vocab_size = text_vocab_size(self.tokenizer)
        # an adapters-only checkpoint lacks the base LM's weights: load them from lm.pretrained, not the config
        lm_config = None if adapters_only(config) else saved.get("lm_config")
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
        """One left-padded batch of sequences: ``[BOS, image tokens, proprio, prompt]`` followed, for sequential
        decoding, by the action ids and EOS when ``action_ids`` (B, horizon * 7) are given (training), or, for
        parallel decoding, by the empty action slots."""
        vision = self.vision_tokens(obs)  # (B, N, H)
        batch, n_image = vision.shape[:2]
        proprio = self.proprio_token(obs)  # (B, 1, H) or None
        bos = self.tokenizer.bos_token_id
        eos = self.tokenizer.eos_token_id
        parallel = self.config.decoding == "parallel"
        n_slots = self.config.horizon * self.action_dim
        rows_ids, rows_kinds = [], []
        for b in range(batch):
            ids = ([bos] if bos is not None else []) + [0] * n_image + ([0] if proprio is not None else [])
            kinds = ([BOS] if bos is not None else []) + [IMAGE] * n_image + ([PROPRIO] if proprio is not None else [])
            text = self.prompt_ids(instructions[b])
            ids += text
            kinds += [TEXT] * len(text)
            if parallel:
                ids += [0] * n_slots
                kinds += [SLOT] * n_slots
            elif action_ids is not None:
                ids += action_ids[b].tolist() + [eos]
                kinds += [ACTION] * action_ids.shape[1] + [EOS]
            rows_ids.append(ids)
            rows_kinds.append(kinds)
        length = max(len(r) for r in rows_ids)
        device = vision.device
        input_ids = torch.zeros(batch, length, dtype=torch.long)
        kinds = torch.full((batch, length), PAD, dtype=torch.long)
        for b, (ids, row_kinds) in enumerate(zip(rows_ids, rows_kinds)):
            input_ids[b, length - len(ids) :] = torch.tensor(ids)
            kinds[b, length - len(ids) :] = torch.tensor(row_kinds)
        input_ids, kinds = input_ids.to(device), kinds.to(device)
        embeds = self.lm.get_input_embeddings()(input_ids).to(vision.dtype)
        embeds = embeds.masked_scatter((kinds == IMAGE).unsqueeze(-1), vision)
        if proprio is not None:
            embeds = embeds.masked_scatter((kinds == PROPRIO).unsqueeze(-1), proprio)
        if parallel:
            slots = self.action_slots.to(embeds.dtype).expand(batch, -1, -1)
            embeds = embeds.masked_scatter((kinds == SLOT).unsqueeze(-1), slots)
        valid = kinds != PAD
        position_ids = (valid.long().cumsum(-1) - 1).clamp(min=0)
        labels = torch.where((kinds == ACTION) | (kinds == EOS), input_ids, torch.full_like(input_ids, -100))
        mask = slot_attention_mask(kinds, embeds.dtype) if parallel else valid.long()
        return VLAInputs(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=position_ids,
            kinds=kinds,
            input_ids=input_ids,
            labels=labels,
        )

    def vision_tokens(self, obs: Mapping[str, Any]) -> torch.Tensor:
        """Every camera's patch tokens at the (single) observed step, projected: (B, N_total, H)."""
        tokens = [self.camera_encoder(key)(obs[key][:, -1]).tokens for key in self.image_keys]
        return self.projector(torch.cat(tokens, dim=1))

    def proprio_token(self, obs: Mapping[str, Any]) -> torch.Tensor | None:
        if not self.lowdim_keys:
            return None
        values = torch.cat([obs[key][:, -1] for key in self.lowdim_keys], -1)
        return self.proprio_projector(values).unsqueeze(1)

    # ------------------------------------------------------------------ training
    def compute_loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        obs = self.prepare_obs(batch)
        instructions = obs["language_instruction"]
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

    def decoder_hidden(self, inputs: VLAInputs, **kwargs) -> torch.Tensor:
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
        """Raw actions (B, horizon, A): the action normalisation is the tokenizer's (``normalization.action``
        is identity), un-normalised with the statistics of ``unnorm_key``."""
        instructions = obs.get("language_instruction")
        batch = next(v for k, v in obs.items() if k in self.image_keys).shape[0]
        if instructions is None or len(instructions) != batch:
            raise ValueError(
                "policy=openvla needs one instruction per observation: obs['language_instruction'] = a list of "
                f"{batch} strings (got {instructions!r})"
            )
        tokenizer = self.action_tokenizers[self.resolve_unnorm_key()]
        if self.config.decoding == "parallel":
            inputs = self.build_inputs(obs, instructions)
            hidden = self.decoder_hidden(inputs)[:, -self.config.horizon * self.action_dim :]
            if self.config.action_head == "l1":
                return tokenizer.unnormalize(self.regress(hidden).clamp(-1.0, 1.0))
            ids = self.constrained_argmax(hidden)
        else:
            ids = self.generate_action_ids(self.build_inputs(obs, instructions), self.config.horizon * self.action_dim)
        return tokenizer.decode(ids.view(batch, self.config.horizon, self.action_dim)).float()

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

    # ------------------------------------------------------------------ checkpoints
    def lora_base_keys(self) -> list[str]:
        """State-dict keys of the LM's base weights that an adapters-only checkpoint leaves out."""
        if not adapters_only(self.config):
            return []
        return [k for k in self.state_dict() if k.startswith("lm.") and "lora_" not in k]

    def merged(self) -> bool:
        """Whether checkpoints fold the LoRA adapters into the LM (``save_lm: merged``)."""
        return self.config.lm.train == "lora" and self.config.save_lm == "merged"

    def save_extra_files(self, directory: Path) -> None:
        if self.config.lm.train == "lora" and not self.merged():
            self.lm.save_pretrained(str(directory / "lm_adapter"))
        (directory / "language_model.json").write_text(json.dumps(lm_config_dict(self.lm), indent=1))
        self.tokenizer.save_pretrained(str(directory / "tokenizer"))
        by_key = dataset_stats_by_key(self.dataset_stats)
        statistics = {key: {**by_key[key], "action": tok.to_dict()} for key, tok in self.action_tokenizers.items()}
        (directory / "dataset_statistics.json").write_text(json.dumps(statistics, indent=1))

    def save_weights(self, path: Path) -> None:
        """Adapters only: every weight but the pretrained base LM's. Merged: the adapters folded into the LM's
        weights (peft's merge, undone after the copy), under a plain model's names."""
        from safetensors.torch import save_file

        if not self.merged():
            skipped = set(self.lora_base_keys())
            if not skipped:
                return super().save_weights(path)
            save_file({k: v.contiguous() for k, v in self.state_dict().items() if k not in skipped}, str(path))
            return
        self.lm.merge_adapter()
        try:
            state = {}
            for key, value in self.state_dict().items():
                if "lora_" in key:
                    continue
                if key.startswith("lm."):
                    key = "lm." + key[len("lm.") :].replace("base_model.model.", "", 1).replace(".base_layer", "")
                state[key] = value.detach().clone().contiguous()
        finally:
            self.lm.unmerge_adapter()
        save_file(state, str(path))

    def saved_config(self) -> dict:
        config = super().saved_config()
        if self.merged():  # a merged checkpoint is a plain model: rebuilt from its saved LM config, no LoRA
            config["lm"] = {**config["lm"], "train": "full", "pretrained": None, "quantization": None}
        return config

    @classmethod
    def restore_kwargs(cls, directory: Path) -> dict:
        saved: dict[str, Any] = {}
        if (directory / "language_model.json").is_file():
            saved["lm_config"] = json.loads((directory / "language_model.json").read_text())
        if (directory / "tokenizer").is_dir():
            saved["tokenizer_dir"] = str(directory / "tokenizer")
        return {"saved": saved}

    def load_weights(self, path: Path, device: str) -> None:
        """Loads ``model.safetensors``; an adapters-only checkpoint may lack exactly the base LM's weights."""
        from safetensors.torch import load_file

        state = load_file(str(path), device=str(device))
        missing, unexpected = self.load_state_dict(state, strict=False)
        allowed = set(self.lora_base_keys())
        bad_missing = [k for k in missing if k not in allowed]
        if bad_missing or unexpected:
            raise RuntimeError(
                f"{path} does not match this policy: missing {bad_missing[:5]}, unexpected {list(unexpected)[:5]}"
            )


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


def slot_attention_mask(kinds: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A (B, 1, L, L) additive mask: causal over the prompt, padding never attended, and the action slots seeing
    the whole prompt and each other in both directions (parallel decoding)."""
    length = kinds.shape[1]
    valid = kinds != PAD
    causal = torch.ones(length, length, dtype=torch.bool, device=kinds.device).tril()
    slots = kinds == SLOT
    allowed = (causal.unsqueeze(0) | (slots.unsqueeze(2) & slots.unsqueeze(1))) & valid.unsqueeze(1)
    allowed |= torch.eye(length, dtype=torch.bool, device=kinds.device).unsqueeze(0)  # padded rows: no NaNs
    mask = torch.zeros(allowed.shape, dtype=dtype, device=kinds.device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min).unsqueeze(1)


def adapters_only(config: VLAConfig) -> bool:
    """Whether checkpoints leave the base LM's weights out (LoRA on a pretrained LM, ``save_lm: adapters``)."""
    return config.lm.train == "lora" and bool(config.lm.pretrained) and config.save_lm == "adapters"


def dataset_stats_by_key(stats: Mapping[str, Any]) -> dict[str, Mapping]:
    """Per-dataset statistics: ``stats["datasets"]`` (a mixture, keyed by store name) or the one set as
    ``default``."""
    if "datasets" in stats and stats["datasets"]:
        return dict(stats["datasets"])
    return {"default": stats}


def resolve_train_modes(config: VLAConfig) -> None:
    """``train: auto`` (the openvla preset's default for the LM and the vision encoder): LoRA where the part loads
    pretrained weights (OpenVLA's fine-tuning recipe: r 32, alpha 16, every linear layer), full training where it
    is built from its config with random weights (adapters on random weights learn little; nothing to preserve)."""
    if config.lm.train == "auto":
        config.lm.train = "lora" if config.lm.pretrained else "full"
    encoder = config.encoder
    if encoder.get("train") == "auto":
        halves = [encoder] + [encoder.get(h) or {} for h in ("dinov2", "siglip")]
        pretrained = any(isinstance(h, Mapping) and h.get("pretrained") for h in halves)
        encoder["train"] = "lora" if pretrained else "finetune"


def validate(config: VLAConfig) -> None:
    if config.decoding not in DECODINGS:
        raise ValueError(f"policy.decoding must be one of {DECODINGS}, got {config.decoding!r}")
    if config.action_head not in ACTION_HEADS:
        raise ValueError(f"policy.action_head must be one of {ACTION_HEADS}, got {config.action_head!r}")
    if config.action_head == "l1" and config.decoding != "parallel":
        raise ValueError("policy.action_head=l1 needs policy.decoding=parallel (the sequential decoder emits tokens)")
    if config.n_obs_steps != 1:
        raise ValueError(f"policy=openvla sees one observation (n_obs_steps=1), got {config.n_obs_steps}")
    if config.normalization.get("action", "identity") != "identity":
        raise ValueError(
            "policy=openvla normalises actions with its action tokenizer: keep policy.normalization.action=identity"
        )
    if config.save_lm not in ("adapters", "merged"):
        raise ValueError(f"policy.save_lm must be adapters or merged, got {config.save_lm!r}")
    if config.n_bins < 2:
        raise ValueError(f"policy.n_bins must be >= 2, got {config.n_bins}")
    check_lm_config(config.lm)
