"""The policy interface every policy implements, and its checkpoint format.

A policy is built from its config, the dataset's features (keys, shapes, kinds) and the dataset's statistics;
it normalises inputs and actions itself, so callers pass raw env observations and get raw env actions.

Horizons follow Chi et al.: a policy sees ``n_obs_steps`` observations ending now, predicts ``horizon`` actions
starting at the first observed step, and the caller executes ``n_action_steps`` of them (those from the current
step on) before asking again.

Checkpoint directory (``save_pretrained``; ``Policy.from_pretrained(dir)`` needs nothing else)::

    model.safetensors    weights, normalisation buffers included
    config.yaml          the resolved config: ``policy`` (and, from `embodied train`, ``env``, optimiser, ...)
    features.json        the dataset features the policy was built for
    dataset_stats.json   the statistics its normalisation came from
    encoders/<camera>.json  each encoder's config and its backbone's own config (rebuilt offline)
    checksums.json       size and SHA-256 of every file, checked on load (embodied.integrity)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from embodied.config_checks import at_least
from embodied.datasets.sampler import horizon_offsets
from embodied.features import Feature
from embodied.policies.normalize import Normalizer


@dataclass
class PolicyConfig:
    """Fields every policy has; each policy's config dataclass extends it."""

    name: str = ""
    n_obs_steps: int = 1  # observations the policy sees, ending at the current step
    horizon: int = 8  # actions predicted per call, starting at the first observed step
    n_action_steps: int = 8  # actions executed per call, from the current step on
    # observation keys; null: every camera + proprio when the data has images, else proprio + state
    obs_keys: list[str] | None = None
    # normalisation per feature kind: mean_std | min_max | identity
    normalization: dict[str, str] = field(
        default_factory=lambda: {"proprio": "mean_std", "state": "mean_std", "action": "min_max"}
    )

    CHECKS: ClassVar = {"n_obs_steps": at_least(1), "horizon": at_least(1), "n_action_steps": at_least(1)}


class Policy(nn.Module):
    """Base class. Subclasses implement :meth:`compute_loss` and :meth:`predict_chunk`.

    ``reads_pooled_features``: whether the policy can train on cached pooled encoder features (``embodied
    cache-features``); policies that read patch tokens (the VLA) cannot.

    Args:
        config: the policy's config dataclass.
        features: the dataset's features by key (``EpisodeStore.features``).
        stats: the dataset's statistics by key (``EpisodeStore.stats``).
        encoder_configs: saved encoder configs (from a checkpoint), so backbones are rebuilt without a download.
    """

    def __init__(
        self,
        config: PolicyConfig,
        features: Mapping[str, Feature],
        stats: Mapping[str, Mapping],
        encoder_configs: Mapping[str, dict] | None = None,
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
        self.saved_encoder_configs = dict(encoder_configs or {})
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
        """Prepared observations (B, n_obs_steps, ...) -> normalised actions (B, horizon, action_dim)."""
        raise NotImplementedError

    def reset(self) -> None:
        """Clears any state kept between calls (none here); called before each evaluation run."""

    def image_encoders(self) -> dict[str, Any]:
        """{image key: the encoder that reads it}; policies with encoders override this (feature caching)."""
        return {}

    # ------------------------------------------------------------------ shared behaviour
    @property
    def device(self) -> torch.device:
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
        actions = self.normalizer.unnormalize("action", chunk.float())
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
        if "language_instruction" in obs:  # a list of strings, for language-conditioned policies
            out["language_instruction"] = list(obs["language_instruction"])
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
        """Writes the checkpoint files (see the module docstring) into ``directory``; ``manifest=False`` leaves
        ``checksums.json`` to a caller that adds files of its own (the trainer's state)."""
        from omegaconf import OmegaConf

        directory = Path(directory)
        (directory / "encoders").mkdir(parents=True, exist_ok=True)
        self.save_weights(directory / "model.safetensors")
        config = dict(run_config or {})
        config["policy"] = self.saved_config()
        OmegaConf.save(OmegaConf.create(config), directory / "config.yaml")
        _write_json(directory / "features.json", [f.to_dict() for f in self.features.values()])
        _write_json(directory / "dataset_stats.json", self.dataset_stats)
        for name, encoder in self.encoder_configs().items():
            _write_json(directory / "encoders" / f"{name}.json", encoder)
        self.save_extra_files(directory)
        if manifest:
            from embodied.integrity import write_manifest

            write_manifest(directory)
        return directory

    def save_extra_files(self, directory: Path) -> None:
        """Policy-specific checkpoint files beside the common ones (the VLA's tokenizer, LM config, ...)."""

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> Policy:
        """Rebuilds a policy from a checkpoint directory alone (no dataset, no hub access).

        Every file is checked against ``checksums.json`` first; a damaged or unreadable checkpoint raises
        :class:`embodied.integrity.CheckpointError` naming the file.
        """
        from omegaconf import OmegaConf

        from embodied.integrity import CheckpointError, verify_manifest
        from embodied.policies import POLICIES

        directory = Path(directory)
        missing = [
            n
            for n in ("model.safetensors", "config.yaml", "features.json", "dataset_stats.json")
            if not (directory / n).is_file()
        ]
        if missing:
            raise FileNotFoundError(f"{directory} is not a policy checkpoint: missing {', '.join(missing)}")
        verify_manifest(directory)
        try:
            policy_cfg = OmegaConf.to_container(OmegaConf.load(directory / "config.yaml"))["policy"]
            features = {d["key"]: Feature.from_dict(d) for d in _read_json(directory / "features.json")}
            stats = _read_json(directory / "dataset_stats.json")
            encoders = {p.stem: _read_json(p) for p in sorted((directory / "encoders").glob("*.json"))}
        except Exception as error:  # parse errors of our own files: the checkpoint is damaged, not the code
            raise CheckpointError(f"checkpoint {directory} cannot be read: {type(error).__name__}: {error}") from None
        config = POLICIES.config_from(policy_cfg)
        policy_class = POLICIES.get(config.name)
        extra = policy_class.restore_kwargs(directory)
        policy = policy_class(config, features, stats, encoder_configs=encoders, **extra)
        weights = directory / "model.safetensors"
        try:
            policy.load_weights(weights, str(device))
        except Exception as error:
            raise CheckpointError(f"{weights} cannot be loaded: {type(error).__name__}: {error}") from None
        bad = next((name for name, value in policy.state_dict().items()
                    if value.is_floating_point() and not torch.isfinite(value).all()), None)  # fmt: skip
        if bad is not None:
            raise CheckpointError(f"{weights}: weight {bad!r} holds NaN or inf; the checkpoint is unusable")
        return policy.to(device)

    def save_weights(self, path: Path) -> None:
        """Writes ``model.safetensors`` (every weight and buffer); policies that leave weights out override it."""
        from safetensors.torch import save_model

        save_model(self, str(path))

    def saved_config(self) -> dict:
        """The ``policy`` section of the checkpoint's config.yaml."""
        return asdict(self.config)

    @classmethod
    def restore_kwargs(cls, directory: Path) -> dict:
        """Extra constructor arguments a policy rebuilds from its checkpoint's own files (none here)."""
        return {}

    def load_weights(self, path: Path, device: str) -> None:
        """Loads ``model.safetensors`` (strict: every weight must be there)."""
        from safetensors.torch import load_model

        load_model(self, str(path), device=device)


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
    unknown = [k for k in requested if k not in features or features[k].kind in ("action", "reward", "flag")]
    if unknown:
        observable = [k for k, f in features.items() if f.kind in ("image", "proprio", "state")]
        raise KeyError(f"policy.obs_keys {unknown} are not observations of this dataset; it has {observable}")
    return list(requested)


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=1))


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())
