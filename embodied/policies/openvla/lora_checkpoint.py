"""What a VLA checkpoint holds beyond the common files, and the LoRA surgery of its weights.

Files: ``language_model.json`` (the LM's config, to rebuild it offline), ``tokenizer/``, ``dataset_statistics.json``
(per training store, like OpenVLA's, with each store's action bins) and, with LoRA, ``lm_adapter/`` (peft's files).
With ``lm.train=lora`` and a ``pretrained`` LM, ``save_lm: adapters`` leaves the base LM's weights out of
``model.safetensors`` (they are reloaded from ``lm.pretrained``); ``merged`` folds the adapters into the weights and
saves a plain model that loads with no LoRA at all. A quantised LM's base is always left out and quantised again
on load (see :func:`~embodied.policies.openvla.config.base_lm_reloaded`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from embodied.policies.openvla.config import base_lm_reloaded
from embodied.policies.openvla.language_model import lm_config_dict


def merged(config) -> bool:
    """Whether checkpoints fold the LoRA adapters into the LM (``save_lm: merged``)."""
    return config.lm.train == "lora" and config.save_lm == "merged"


def lora_base_keys(policy) -> list[str]:
    """State-dict keys of the LM's base weights that an adapters-only or quantised checkpoint (and training state)
    leaves out: the policy's ``reloaded_state_keys``."""
    if not base_lm_reloaded(policy.config):
        return []
    return [k for k in policy.state_dict() if k.startswith("lm.") and "lora_" not in k]


def saved_files(directory: Path | None) -> dict[str, Any]:
    """What a checkpoint directory restores besides the weights: the LM config and the tokenizer's folder."""
    saved: dict[str, Any] = {}
    if directory is None:
        return saved
    if (directory / "language_model.json").is_file():
        saved["lm_config"] = json.loads((directory / "language_model.json").read_text())
    if (directory / "tokenizer").is_dir():
        saved["tokenizer_dir"] = str(directory / "tokenizer")
    return saved


def save_files(policy, directory: Path, statistics: dict) -> None:
    """The VLA's own checkpoint files (see the module docstring)."""
    if policy.config.lm.train == "lora" and not merged(policy.config):
        policy.lm.save_pretrained(str(directory / "lm_adapter"))
    (directory / "language_model.json").write_text(json.dumps(lm_config_dict(policy.lm), indent=1))
    policy.tokenizer.save_pretrained(str(directory / "tokenizer"))
    (directory / "dataset_statistics.json").write_text(json.dumps(statistics, indent=1))


def merged_weights(policy) -> dict:
    """The state dict of a ``save_lm: merged`` checkpoint: the adapters folded into the LM's weights (peft's merge,
    undone after the copy), under a plain model's names."""
    policy.lm.merge_adapter()
    try:
        state = {}
        for key, value in policy.state_dict().items():
            if "lora_" in key:
                continue
            if key.startswith("lm."):
                key = "lm." + key[len("lm.") :].replace("base_model.model.", "", 1).replace(".base_layer", "")
            state[key] = value.detach().clone().contiguous()
    finally:
        policy.lm.unmerge_adapter()
    return state


def saved_policy_config(policy, config: dict) -> dict:
    """A merged checkpoint is a plain model: rebuilt from its saved LM config, with no LoRA."""
    if merged(policy.config):
        config["lm"] = {**config["lm"], "train": "full", "pretrained": None, "quantization": None}
    return config
