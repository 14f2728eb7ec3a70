"""The reward checkpoint: a directory that rebuilds a learned visual reward with no dataset and no hub access.

::

    reward.json          the reward config, the camera and image shape it reads, the encoder's backbone config,
                         and how it was trained (data, queries, held-out accuracy)
    model.safetensors    every weight (the encoder's too: a frozen random-init or pretrained backbone is part of it)
    demos.safetensors    the preferred demonstrations' frames (uint8), which RAPL and OT rewards match against
    checksums.json       size and SHA-256 of every file, checked on load
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

REQUIRED = ("reward.json", "model.safetensors", "demos.safetensors")


def save_reward(
    model, directory: str | Path, demo_frames: list[torch.Tensor], info: dict, manifest: bool = True
) -> Path:
    """Writes ``model`` (a :class:`~embodied.rewards.model.VisualReward`) with its demos' frames and ``info``
    (``manifest=False``: inside a training checkpoint, whose own manifest covers it)."""
    from safetensors.torch import save_file

    from embodied.integrity import write_manifest

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, directory / "model.safetensors")
    demos = {f"demo_{i:04d}": f.contiguous().cpu() for i, f in enumerate(demo_frames)}
    save_file(demos, directory / "demos.safetensors")
    record = {"reward": asdict(model.config), "backbone_config": model.encoder.backbone_config(), **info}
    (directory / "reward.json").write_text(json.dumps(record, indent=1, default=str))
    if manifest:
        write_manifest(directory)
    return directory


def load_reward(directory: str | Path, device: str | torch.device = "cpu"):
    """The reward saved in ``directory``, on ``device``, with its demos set; returns (model, reward.json)."""
    from safetensors.torch import load_file

    from embodied.integrity import CheckpointError, verify_manifest
    from embodied.rewards.config import RewardConfig
    from embodied.rewards.model import VisualReward

    directory = Path(directory)
    missing = [name for name in REQUIRED if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{directory} is not a reward checkpoint: missing {', '.join(missing)}")
    verify_manifest(directory)
    try:
        info = json.loads((directory / "reward.json").read_text())
        config = RewardConfig(**info["reward"])
        model = VisualReward(config, tuple(info["image_shape"]), backbone_config=info.get("backbone_config"))
        model.load_state_dict(load_file(directory / "model.safetensors"))
        demos = load_file(directory / "demos.safetensors")
    except Exception as error:
        message = f"reward checkpoint {directory} cannot be read: {type(error).__name__}: {error}"
        raise CheckpointError(message) from None
    model = model.to(device).eval()
    model.set_demos([demos[k].to(device) for k in sorted(demos)])
    return model, info
