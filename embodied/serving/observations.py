"""What a client may send: the policy's observation keys under their own names or the client's (a key map), checked
before anything reaches the policy.

Every request is one step's observation (the server keeps each session's history for policies that see several
steps). Keys are the policy's (``images/agentview``, ``proprio``, ``language_instruction``) or aliases from
:func:`default_key_map` (openpi's ``observation/image``, ``observation/wrist_image``, ``observation/state``,
``prompt``; OpenVLA's ``image``, ``instruction``), extended or overridden by ``serve key_map={client: policy}``.
Checks: no unknown or missing keys, images uint8 (H, W, 3) at the policy's size (or resized, ``resize_images``),
low-dimensional inputs numeric with the policy's shape and finite, the instruction a string of at most 256
characters. Each failure is a :class:`RequestError` saying what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from embodied.envs.base import MAX_INSTRUCTION_LENGTH
from embodied.features import INSTRUCTION


class RequestError(ValueError):
    """A request the server refuses (the client's fault: HTTP 4xx, a websocket text frame)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def default_key_map(policy) -> dict[str, str]:
    """Aliases clients use for the policy's keys: openpi's and OpenVLA's names for the first camera, a wrist
    camera, proprioception and the instruction."""
    cameras = list(policy.image_keys)
    aliases: dict[str, str] = {"prompt": INSTRUCTION, "instruction": INSTRUCTION}
    if cameras:
        wrist = next((c for c in cameras if "wrist" in c or "hand" in c or "gripper" in c.lower()), None)
        main = next((c for c in cameras if c != wrist), cameras[0])
        aliases["observation/image"] = aliases["image"] = main
        if wrist is not None and wrist != main:
            aliases["observation/wrist_image"] = wrist
    if "proprio" in policy.obs_keys:
        aliases["observation/state"] = "proprio"
    return aliases


class ObservationSpec:
    """The observations one policy accepts, with the key map (see the module docstring)."""

    def __init__(self, policy, key_map: Mapping[str, str] | None = None, resize_images: bool = True):
        self.features = {k: policy.features[k] for k in [*policy.obs_keys, *policy.optional_obs_keys]}
        self.required = list(policy.obs_keys) + ([INSTRUCTION] if policy.reads_instruction else [])
        self.optional = [*policy.optional_obs_keys] + ([] if policy.reads_instruction else [INSTRUCTION])
        self.key_map = {**default_key_map(policy), **dict(key_map or {})}
        for alias, key in self.key_map.items():
            if key not in self.features and key != INSTRUCTION:
                raise ValueError(f"key_map: {alias!r} -> {key!r}, but the policy reads {sorted(self.features)}")
        self.resize_images = resize_images

    def describe(self) -> dict:
        """The accepted keys, for ``/metadata`` and the websocket's first frame."""
        inputs = {k: {"shape": list(f.shape), "dtype": f.dtype, "kind": f.kind} for k, f in self.features.items()}
        inputs[INSTRUCTION] = {"shape": [], "dtype": "str", "kind": "language"}
        return {"required": self.required, "optional": self.optional, "inputs": inputs, "key_map": self.key_map,
                "resize_images": self.resize_images}  # fmt: skip

    def parse(self, message: Any) -> dict[str, Any]:
        """A checked observation ``{policy key: value}`` from one decoded request, or :class:`RequestError`."""
        if not isinstance(message, dict):
            raise RequestError(f"a request must be a map of observation keys, got {type(message).__name__}")
        out: dict[str, Any] = {}
        known = set(self.required) | set(self.optional)
        for name, value in message.items():
            if not isinstance(name, str):
                raise RequestError(f"observation keys must be strings, got {name!r}")
            key = self.key_map.get(name, name)
            if key not in known:
                raise RequestError(f"unknown observation key {name!r}; this policy reads {self._accepted()}")
            if key in out:
                raise RequestError(f"observation key {key!r} given twice (as {name!r} and under another name)")
            out[key] = self._value(name, key, value)
        missing = [k for k in self.required if k not in out]
        if missing:
            raise RequestError(f"missing observation keys {missing}; this policy reads {self._accepted()}")
        return out

    def _accepted(self) -> str:
        aliases = {}
        for alias, key in self.key_map.items():
            aliases.setdefault(key, []).append(alias)
        parts = [f"{k} (or {', '.join(aliases[k])})" if k in aliases else k for k in [*self.required, *self.optional]]
        return "; ".join(parts)

    def _value(self, name: str, key: str, value: Any) -> Any:
        if key == INSTRUCTION:
            if not isinstance(value, str):
                raise RequestError(f"{name!r} must be a string, got {type(value).__name__}")
            if len(value) > MAX_INSTRUCTION_LENGTH:
                raise RequestError(f"{name!r} is {len(value)} characters; at most {MAX_INSTRUCTION_LENGTH}")
            return value
        feature = self.features[key]
        if isinstance(value, (list, tuple)) and feature.kind != "image":
            try:
                value = np.asarray(value)
                value = value.astype(np.float64) if value.dtype.kind in "biuf" else value
            except (TypeError, ValueError, OverflowError):
                raise RequestError(f"{name!r} must be a list of numbers") from None
        if not isinstance(value, np.ndarray):
            raise RequestError(f"{name!r} must be an array, got {type(value).__name__}")
        if feature.kind == "image":
            return self._image(name, feature, value)
        if value.dtype.kind not in "biuf":
            raise RequestError(f"{name!r} must be numeric, got dtype {value.dtype}")
        if tuple(value.shape) != tuple(feature.shape):
            raise RequestError(f"{name!r} must have shape {list(feature.shape)}, got {list(value.shape)}")
        value = value.astype(np.float32)
        if not np.isfinite(value).all():
            raise RequestError(f"{name!r} contains NaN or inf")
        return value

    def _image(self, name: str, feature, value: np.ndarray) -> np.ndarray:
        if value.dtype != np.uint8:
            raise RequestError(f"{name!r} must be a uint8 image, got dtype {value.dtype}")
        if value.ndim != 3 or value.shape[-1] != 3 or min(value.shape[:2]) < 1:
            raise RequestError(f"{name!r} must be an (H, W, 3) RGB image, got shape {list(value.shape)}")
        if value.shape == tuple(feature.shape):
            return value if value.flags.writeable else value.copy()  # torch refuses read-only buffers
        if not self.resize_images:
            raise RequestError(f"{name!r} must be {list(feature.shape)} (resize_images=false), got {list(value.shape)}")
        if max(value.shape[:2]) > 4096:
            raise RequestError(f"{name!r} is {list(value.shape)}: images over 4096 px are refused")
        from PIL import Image

        height, width = feature.shape[:2]
        return np.asarray(Image.fromarray(value).resize((width, height), Image.BILINEAR))
