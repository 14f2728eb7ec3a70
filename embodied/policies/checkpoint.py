"""The policy checkpoint: a self-contained directory that rebuilds the policy with no dataset and no hub access.

::

    model.safetensors    weights, normalisation buffers included
    config.yaml          the resolved config: ``policy`` (and, from `embodied train`, ``env``, optimiser, ...)
    features.json        the dataset features the policy was built for
    dataset_stats.json   the statistics its normalisation came from
    encoders/<camera>.json  each encoder's config and its backbone's own config (rebuilt offline)
    checksums.json       size and SHA-256 of every file, checked on load (embodied.integrity)

plus what a policy adds (``save_extra_files``: the VLA's tokenizer, LM config, per-dataset statistics, adapters).
No pickled objects: a checkpoint loads with any version that knows the policy's name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

REQUIRED = ("model.safetensors", "config.yaml", "features.json", "dataset_stats.json")


def save_policy(policy, directory: str | Path, run_config: Mapping | None = None, manifest: bool = True) -> Path:
    """Writes ``policy``'s checkpoint files into ``directory`` (``run_config``: the run's other sections, e.g. the
    env, saved beside ``policy`` in config.yaml)."""
    from omegaconf import OmegaConf

    directory = Path(directory)
    (directory / "encoders").mkdir(parents=True, exist_ok=True)
    policy.save_weights(directory / "model.safetensors")
    config = dict(run_config or {})
    config["policy"] = policy.saved_config()
    OmegaConf.save(OmegaConf.create(config), directory / "config.yaml")
    _write_json(directory / "features.json", [f.to_dict() for f in policy.features.values()])
    _write_json(directory / "dataset_stats.json", policy.dataset_stats)
    for name, encoder in policy.encoder_configs().items():
        _write_json(directory / "encoders" / f"{name}.json", encoder)
    policy.save_extra_files(directory)
    if manifest:
        from embodied.integrity import write_manifest

        write_manifest(directory)
    return directory


def load_policy(directory: str | Path, device: str | torch.device = "cpu"):
    """Rebuilds a policy from a checkpoint directory alone.

    Every file is checked against ``checksums.json`` first; a damaged or unreadable checkpoint raises
    :class:`embodied.integrity.CheckpointError` naming the file, as do non-finite weights.
    """
    from omegaconf import OmegaConf

    from embodied.features import Feature
    from embodied.integrity import CheckpointError, verify_manifest
    from embodied.policies import POLICIES

    directory = Path(directory)
    missing = [name for name in REQUIRED if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{directory} is not a policy checkpoint: missing {', '.join(missing)}")
    verify_manifest(directory)
    try:
        policy_cfg = OmegaConf.to_container(OmegaConf.load(directory / "config.yaml"))["policy"]
        features = {d["key"]: Feature.from_dict(d) for d in _read_json(directory / "features.json")}
        stats = _read_json(directory / "dataset_stats.json")
    except Exception as error:  # parse errors of our own files: the checkpoint is damaged, not the code
        raise CheckpointError(f"checkpoint {directory} cannot be read: {type(error).__name__}: {error}") from None
    config = POLICIES.config_from(policy_cfg)
    policy = POLICIES.get(config.name)(config, features, stats, checkpoint_dir=directory)
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


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=1))


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())
