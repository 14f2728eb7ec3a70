"""``dinosiglip``: OpenVLA's fused backbone. DINOv2 (spatial, self-supervised) and SigLIP (semantic,
language-aligned) see the same image; their patch tokens, on the same grid, are concatenated along channels
(D = D_dinov2 + D_siglip). Each half keeps its own normalisation; the grids must match (OpenVLA: 224 px, patch 14
for both), otherwise construction fails naming both grids.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
from torch import nn

from embodied.encoders.base import Encoder, EncoderConfig, EncoderOutput
from embodied.encoders.vit import ViTEncoder, ViTEncoderConfig

_SHARED = ("train", "last_n", "lora_rank", "lora_alpha", "lora_dropout")


@dataclass
class DinoSigLIPConfig(EncoderConfig):
    """``encoder=dinosiglip``: OpenVLA's fused DINOv2 + SigLIP backbone."""

    name: str = "dinosiglip"
    # each half: pretrained (hub id or directory) and/or model (config overrides), pool, keypoints
    dinov2: dict = field(default_factory=dict)
    siglip: dict = field(default_factory=lambda: {"model": {"patch_size": 14}})  # patch 14: DINOv2's grid
    pool: str = "cls"  # per half (cls | mean | spatial_softmax); pooled = both halves' pooled, concatenated

    @classmethod
    def tiny(cls, name: str = "dinosiglip") -> DinoSigLIPConfig:
        """Both halves 2 layers, 32 wide, on the same 4x4 grid."""
        from embodied.encoders.vit import TINY_VIT

        return cls(name=name, dinov2={"model": dict(TINY_VIT)}, siglip={"model": dict(TINY_VIT)})


class DinoSigLIPEncoder(Encoder):
    """Both halves on the same image; tokens and pooled vectors concatenated along channels."""

    def __init__(self, config: DinoSigLIPConfig, backbone_config: dict | None = None):
        super().__init__(config)
        saved = backbone_config or {}
        self.halves = nn.ModuleDict(
            {
                name: ViTEncoder(self._half_config(name, getattr(config, name)), backbone_config=saved.get(name))
                for name in ("dinov2", "siglip")
            }
        )
        grids = {name: half.grid() for name, half in self.halves.items()}
        if grids["dinov2"] != grids["siglip"]:
            raise ValueError(
                f"dinosiglip needs DINOv2 and SigLIP patch grids to match, got {grids} at {self.input_size} px; "
                "set both halves' patch_size (model.patch_size) or image_size so they agree"
            )
        self.dim = sum(half.dim for half in self.halves.values())

    def _half_config(self, name: str, overrides: dict) -> ViTEncoderConfig:
        known = {f.name for f in fields(ViTEncoderConfig)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"encoder.{name} has unknown fields {sorted(unknown)}; known: {sorted(known)}")
        shared = {key: getattr(self.config, key) for key in _SHARED}
        size = self.config.image_size
        return ViTEncoderConfig(
            **{"pool": self.config.pool, **overrides, **shared, "name": name, "random_shift": 0, "image_size": size}
        )

    @property
    def input_size(self) -> int:
        """``image_size``, else the DINOv2 half's."""
        return self.config.image_size or self.halves["dinov2"].input_size

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        pixels = self.to_pixels(images)  # resized and shifted once, so both halves see the same image
        outputs = [half.encode(half.normalize(pixels)) for half in self.halves.values()]
        tokens = torch.cat([out.tokens for out in outputs], dim=-1)
        return EncoderOutput(tokens, torch.cat([out.pooled for out in outputs], dim=-1))

    def encode(self, pixels: torch.Tensor) -> EncoderOutput:
        """Not used: each half normalises its own way (call the encoder on uint8 images)."""
        raise NotImplementedError("dinosiglip normalises per half: call the encoder on uint8 images")

    def backbone_config(self) -> dict:
        """Both halves' transformers configs."""
        return {name: half.backbone_config() for name, half in self.halves.items()}

    def apply_train_mode(self) -> DinoSigLIPEncoder:
        """Each half's train mode (they share it)."""
        for half in self.halves.values():
            half.apply_train_mode()
        return self

    def grid(self) -> tuple[int, int]:
        """The shared patch grid."""
        return self.halves["dinov2"].grid()
