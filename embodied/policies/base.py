"""The policy interface every policy implements, and its checkpoint format.

A policy is built from its config, the dataset's features (keys, shapes, kinds) and the dataset's statistics;
it normalises inputs and actions itself, so callers pass raw env observations and get raw env actions.

Horizons follow Chi et al.: a policy sees ``n_obs_steps`` observations ending now, predicts ``horizon`` actions
starting at the first observed step, and the caller executes ``n_action_steps`` of them (those from the current
step on) before asking again.

Checkpoints (``save_pretrained`` / ``Policy.from_pretrained``): see :mod:`embodied.policies.checkpoint`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from embodied.datasets.sampler import horizon_offsets
from embodied.features import INSTRUCTION, Feature
from embodied.policies.config import PolicyConfig
from embodied.policies.normalize import Normalizer


class Policy(nn.Module):
    """Base class. Subclasses implement :meth:`compute_loss` and :meth:`predict_chunk`.

    ``reads_pooled_features``: whether the policy can train on cached pooled encoder features (``embodied
    cache-features``); policies that read patch tokens (the VLA) cannot.

    Args:
        config: the policy's config dataclass.
        features: the dataset's features by key (``EpisodeStore.features``).
        stats: the dataset's statistics by key (``EpisodeStore.stats``).
        checkpoint_dir: when restoring, the checkpoint being loaded: a policy rebuilds from its files what it
            needs besides the weights (encoder backbone configs, so nothing is downloaded; the VLA's tokenizer).
    """

    def __init__(
        self,
        config: PolicyConfig,
        features: Mapping[str, Feature],
        stats: Mapping[str, Mapping],
        checkpoint_dir: str | Path | None = None,
    ):
        super().__init__()
        last_executable = config.horizon - config.n_obs_steps + 1
        if not 1 <= config.n_action_steps <= last_executable:
            raise ValueError(
                f"policy.n_action_steps must be in [1, horizon - n_obs_steps + 1 = {last_executable}], "
                f"got {config.n_action_steps} (horizon {config.horizon}, n_obs_steps {config.n_obs_steps})"
            )
        self.config = config
        self.features = dict(features)
        if "action" not in self.features:
            raise KeyError(f"the dataset has no 'action' feature; features: {sorted(self.features)}")
        self.obs_keys = resolve_obs_keys(config.obs_keys, self.features)
        self.image_keys = [k for k in self.obs_keys if self.features[k].kind == "image"]
        self.lowdim_keys = [k for k in self.obs_keys if self.features[k].kind != "image"]
        self.action_dim = int(self.features["action"].shape[-1])
        self.dataset_stats = {k: dict(v) for k, v in stats.items()}
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.saved_encoder_configs = {
            p.stem: _read_json(p) for p in sorted((self.checkpoint_dir / "encoders").glob("*.json"))
        } if self.checkpoint_dir is not None else {}  # fmt: skip
        modes = {k: config.normalization.get(self.features[k].kind, "identity") for k in self.lowdim_keys}
        modes["action"] = config.normalization.get("action", "identity")
        self.normalizer = Normalizer(modes, self.dataset_stats)
        self.cached_image_keys: set[str] = set()

    reads_pooled_features = True

    # ------------------------------------------------------------------ to implement
    def compute_loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """A training batch of windows (see :meth:`key_offsets`) -> (scalar loss, metrics for logging)."""
        raise NotImplementedError

    def predict_chunk(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Prepared observations (B, n_obs_steps, ...) -> normalised actions (B, horizon, action_dim);
        :meth:`unnormalize_actions` maps them back to the env's action space."""
        raise NotImplementedError

    def chunk_log_likelihood(self, batch: Mapping[str, Any], generator: torch.Generator) -> torch.Tensor:
        """A training batch of windows -> (B,) log-likelihood of each window's action chunk given its observations,
        up to a constant, or a surrogate of it: what preference alignment (DPO, :mod:`embodied.alignment`) compares
        between the policy and its frozen reference. Any randomness (a diffusion step and its noise) is drawn from
        ``generator``, so two calls with equally seeded generators compare like with like. Policies whose actions
        are not a trainable distribution (the planner) leave it unimplemented."""
        raise NotImplementedError(
            f"policy {self.config.name} gives no action likelihood, so it cannot be aligned with a preference "
            "objective (method=dpo); use method=weighted_bc or filtered_bc, or align bc, diffusion or openvla"
        )

    def unnormalize_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Normalised actions (B, T, action_dim) -> raw env actions (the normaliser's ``action`` statistics)."""
        return self.normalizer.unnormalize("action", actions)

    def reset(self) -> None:
        """Clears any state kept between calls (none here); called before each evaluation run."""

    def image_encoders(self) -> dict[str, Any]:
        """{image key: the encoder that reads it}; policies with encoders override this (feature caching)."""
        return {}

    def goal_keys(self) -> dict[str, str]:
        """``{batch key: store key}`` a goal-conditioned policy reads at a random future step of each training
        window's episode (see :class:`~embodied.datasets.sampler.WindowSampler`); none here."""
        return {}

    def fit_data(self, datasets) -> None:
        """Derives from the training data, before the first step, what is not learned by gradient (the planner's
        action bank and goal frames); ``datasets``: the run's :class:`WindowDataset` objects. Called on fresh and
        resumed runs alike, so it must be deterministic. Nothing here."""

    # observation keys passed to the policy when an observation holds them (a user's goal image), else left out
    optional_obs_keys: tuple[str, ...] = ()

    @property
    def reads_instruction(self) -> bool:
        """Whether each observation must carry its language instruction (the VLA; FiLM-conditioned policies)."""
        return getattr(self, "instruction_film", None) is not None

    # ------------------------------------------------------------------ shared behaviour
    @property
    def device(self) -> torch.device:
        """Where the policy's weights are."""
        return next(self.parameters()).device

    def key_offsets(self) -> dict[str, list[int]]:
        """Which steps of each key a training window holds, relative to its anchor step (cached cameras are read
        as their ``features/<camera>`` vectors instead of images)."""
        obs_offsets, action_offsets = horizon_offsets(self.config.n_obs_steps, self.config.horizon)
        keys = [feature_key(k) if k in self.cached_image_keys else k for k in self.obs_keys]
        return {**{key: obs_offsets for key in keys}, "action": action_offsets}

    def use_cached_features(self, image_keys) -> None:
        """Train on precomputed pooled features (``features/<camera>``, (B, T, D)) for these cameras."""
        unknown = set(image_keys) - set(self.image_keys)
        if unknown:
            raise KeyError(f"{sorted(unknown)} are not image inputs of this policy ({self.image_keys})")
        self.cached_image_keys = set(image_keys)

    @torch.no_grad()
    def predict_action(self, obs: Mapping[str, Any]) -> torch.Tensor:
        """Raw observations -> the next ``n_action_steps`` raw actions, (B, n_action_steps, action_dim).

        ``obs`` maps each observation key to an array or tensor of shape (B, n_obs_steps, *feature shape)
        (or (B, *feature shape) when n_obs_steps is 1); images stay uint8.
        """
        was_training = self.training
        self.eval()
        try:
            chunk = self.predict_chunk(self.prepare_obs(obs))
        finally:
            self.train(was_training)
        actions = self.unnormalize_actions(chunk.float())
        start = self.config.n_obs_steps - 1
        return actions[:, start : start + self.config.n_action_steps]

    def prepare_obs(self, obs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Tensors on the policy's device with a time dimension; low-dimensional keys normalised."""
        out: dict[str, torch.Tensor] = {}
        for key in self.obs_keys:
            if key in self.image_keys and feature_key(key) in obs:  # cached encoder features: (B, T, D)
                out[feature_key(key)] = torch.as_tensor(obs[feature_key(key)]).to(self.device).float()
                continue
            if key not in obs:
                raise KeyError(f"observation has no {key!r}; the policy needs {self.obs_keys}")
            value = torch.as_tensor(np.asarray(obs[key]) if not torch.is_tensor(obs[key]) else obs[key])
            shape = tuple(self.features[key].shape)
            if value.ndim == len(shape) + 1 and self.config.n_obs_steps == 1:
                value = value.unsqueeze(1)
            if value.ndim != len(shape) + 2 or tuple(value.shape[2:]) != shape:
                raise ValueError(
                    f"observation {key!r} must have shape (B, {self.config.n_obs_steps}, {', '.join(map(str, shape))}),"
                    f" got {tuple(value.shape)}"
                )
            value = value.to(self.device)
            if key in self.lowdim_keys:
                value = self.normalizer.normalize(key, value.float())
            out[key] = value
        if INSTRUCTION in obs:  # a list of strings, for language-conditioned policies
            out[INSTRUCTION] = list(obs[INSTRUCTION])
        return out

    def masked_action_loss(self, pred: torch.Tensor, batch: Mapping[str, Any], kind: str = "l1") -> torch.Tensor:
        """Mean ``kind`` (l1 | mse) error against the normalised target actions, ignoring padded steps."""
        target = self.normalizer.normalize("action", batch["action"].to(self.device).float())
        error = (pred - target).abs() if kind == "l1" else (pred - target).square()
        return masked_mean(error, batch["action_is_pad"].to(self.device))

    def encoder_configs(self) -> dict[str, dict]:
        """Per camera: ``{"config": encoder config, "backbone": backbone config or None}``."""
        encoders = getattr(self, "encoders", {})
        return {
            name: {"config": asdict(encoder.config), "backbone": encoder.backbone_config()}
            for name, encoder in encoders.items()
        }

    # ------------------------------------------------------------------ checkpoints
    def save_pretrained(self, directory: str | Path, run_config: Mapping | None = None, manifest: bool = True) -> Path:
        """Writes a self-contained checkpoint (see :mod:`embodied.policies.checkpoint`); ``manifest=False`` leaves
        ``checksums.json`` to a caller that adds files of its own (the trainer's state)."""
        from embodied.policies.checkpoint import save_policy

        return save_policy(self, directory, run_config, manifest)

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> Policy:
        """Rebuilds a policy from a checkpoint directory alone (no dataset, no hub access); damaged files raise
        :class:`embodied.integrity.CheckpointError` naming them."""
        from embodied.policies.checkpoint import load_policy

        return load_policy(directory, device)

    def save_extra_files(self, directory: Path) -> None:
        """Policy-specific checkpoint files beside the common ones (the VLA's tokenizer, LM config, ...)."""

    def save_weights(self, path: Path) -> None:
        """Writes ``model.safetensors``: every weight and buffer but :meth:`reloaded_state_keys`."""
        from safetensors.torch import save_file, save_model

        reloaded = set(self.reloaded_state_keys())
        if not reloaded:
            save_model(self, str(path))  # handles tensors shared between modules
            return
        save_file({k: v.contiguous() for k, v in self.state_dict().items() if k not in reloaded}, str(path))

    def reloaded_state_keys(self) -> list[str]:
        """State-dict keys whose weights this policy loads again whenever it is built (a pretrained base under LoRA
        or quantisation): checkpoints and training states leave them out. None by default."""
        return []

    def saved_config(self) -> dict:
        """The ``policy`` section of the checkpoint's config.yaml."""
        return asdict(self.config)

    def load_weights(self, path: Path, device: str) -> None:
        """Loads ``model.safetensors``: every weight must be there but :meth:`reloaded_state_keys`."""
        from safetensors.torch import load_file, load_model

        if not self.reloaded_state_keys():
            load_model(self, str(path), device=device)
            return
        load_state_except_reloaded(self, load_file(str(path), device=str(device)), str(path))


def reloaded_state_keys(module: nn.Module) -> list[str]:
    """A policy's :meth:`Policy.reloaded_state_keys`; none for any other module (a pretraining objective)."""
    keys = getattr(module, "reloaded_state_keys", None)
    return keys() if callable(keys) else []


def load_state_except_reloaded(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Loads ``state`` into ``module``; only the keys the module reloads itself may be missing from it."""
    missing, unexpected = module.load_state_dict(state, strict=False)
    reloaded = set(reloaded_state_keys(module))
    missing = [k for k in missing if k not in reloaded]
    if missing or unexpected:
        raise RuntimeError(f"{source} does not match this model: missing {missing[:5]}, unexpected {unexpected[:5]}")


def masked_sample_mean(error: torch.Tensor, is_pad: torch.Tensor) -> torch.Tensor:
    """Per-sample mean (B,) of a (B, T, D) error over the steps that are not padding."""
    valid = (~is_pad).unsqueeze(-1).to(error.dtype)
    return (error * valid).sum((1, 2)) / (valid.sum((1, 2)) * error.shape[-1]).clamp(min=1)


def masked_mean(error: torch.Tensor, is_pad: torch.Tensor) -> torch.Tensor:
    """Mean of a (B, T, D) error over the steps that are not padding (``is_pad``: (B, T) bool)."""
    valid = ~is_pad
    return (error * valid.unsqueeze(-1)).sum() / (valid.sum() * error.shape[-1]).clamp(min=1)


def feature_key(image_key: str) -> str:
    """``images/agentview`` -> ``features/agentview``: where cached encoder features of a camera live in a batch."""
    return "features/" + image_key.split("/", 1)[-1]


def resolve_obs_keys(requested: list[str] | None, features: Mapping[str, Feature]) -> list[str]:
    """The observation keys a policy reads: the requested ones (checked) or the default rule."""
    if requested is None:
        images = [k for k, f in features.items() if f.kind == "image"]
        lowdim = ["proprio"] if images else ["proprio", "state"]
        return images + [k for k in lowdim if k in features]
    not_observed = ("action", "reward", "flag", "language")
    unknown = [k for k in requested if k not in features or features[k].kind in not_observed]
    if unknown:
        observable = [k for k, f in features.items() if f.kind in ("image", "proprio", "state")]
        raise KeyError(f"policy.obs_keys {unknown} are not observations of this dataset; it has {observable}")
    return list(requested)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())
