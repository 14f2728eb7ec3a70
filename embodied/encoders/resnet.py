"""ResNets through `transformers` (``ResNetModel``): ``resnet18`` and ``resnet50``, from ``pretrained=<hub id or
local directory>`` or built from their standard config with random weights when none is given. No torchvision.

``norm: group`` replaces every BatchNorm with GroupNorm (16 channels per group), Diffusion Policy's recipe: batch
statistics are unreliable with small, highly correlated robot batches and with EMA weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from embodied.encoders.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Encoder,
    EncoderConfig,
    EncoderOutput,
)
from embodied.encoders.cnn import spatial_softmax
from embodied.encoders.hub import checkpoint_normalisation, load_pretrained

ARCHITECTURES = {
    "resnet18": dict(layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512], embedding_size=64),
    "resnet50": dict(
        layer_type="bottleneck", depths=[3, 4, 6, 3], hidden_sizes=[256, 512, 1024, 2048], embedding_size=64
    ),
}
POOLS = ("mean", "spatial_softmax")


@dataclass
class ResNetEncoderConfig(EncoderConfig):
    """``encoder=resnet18|resnet50``: transformers' ``ResNetModel``."""

    name: str = "resnet18"
    pretrained: str | None = None  # hub id (e.g. microsoft/resnet-18) or local directory; null: random init
    model: dict | None = None  # overrides of the ResNetConfig when building from config (e.g. tiny for tests)
    norm: str = "batch"  # batch | group (BatchNorm -> GroupNorm)
    pool: str = "mean"  # mean (global average) | spatial_softmax (keypoints)
    keypoints: int = 32  # pool: spatial_softmax
    # pool: spatial_softmax -> width of the pooled vector (Diffusion Policy: 64); null: the backbone's width
    pooled_dim: int | None = None

    @classmethod
    def tiny(cls, name: str = "resnet18") -> ResNetEncoderConfig:
        """Two basic stages, 8 and 16 channels."""
        return cls(name=name, model={"layer_type": "basic", "depths": [1, 1], "hidden_sizes": [8, 16],
                                     "embedding_size": 8})  # fmt: skip


class ResNetEncoder(Encoder):
    """Tokens: the last stage's feature map, flattened (B, h*w, C); pooled: ``pool`` over it (B, C)."""

    def __init__(self, config: ResNetEncoderConfig, backbone_config: dict | None = None):
        super().__init__(config, *checkpoint_normalisation(config.pretrained, IMAGENET_MEAN, IMAGENET_STD))
        from transformers import ResNetConfig, ResNetModel

        if config.norm not in ("batch", "group"):
            raise ValueError(f"encoder.norm must be 'batch' or 'group', got {config.norm!r}")
        if config.pool not in POOLS:
            raise ValueError(f"encoder.pool must be one of {POOLS}, got {config.pool!r}")
        if backbone_config is not None:  # restoring a checkpoint: its weights follow, no hub access
            self.backbone = ResNetModel(ResNetConfig(**backbone_config))
        elif config.pretrained:
            self.backbone = load_pretrained(ResNetModel, config.pretrained)
        else:
            self.backbone = ResNetModel(ResNetConfig(**{**ARCHITECTURES[config.name], **(config.model or {})}))
        if config.norm == "group":
            replace_batchnorm(self.backbone)
        self.dim = int(self.backbone.config.hidden_sizes[-1])
        if config.pool == "spatial_softmax":
            self.to_keypoints = nn.Conv2d(self.dim, config.keypoints, 1)
            self.keypoint_proj = nn.Linear(2 * config.keypoints, config.pooled_dim or self.dim)

    def encode(self, pixels: torch.Tensor) -> EncoderOutput:
        """The last stage's feature map as tokens and its ``pool``."""
        out = self.backbone(pixel_values=pixels)
        features = out.last_hidden_state
        tokens = features.flatten(2).transpose(1, 2)
        if self.config.pool == "spatial_softmax":
            return EncoderOutput(tokens, self.keypoint_proj(spatial_softmax(self.to_keypoints(features))))
        return EncoderOutput(tokens, out.pooler_output.flatten(1))

    @property
    def pooled_dim(self) -> int:
        """``pooled_dim`` when spatial-softmax keypoints are projected, else the channels."""
        return self.keypoint_proj.out_features if self.config.pool == "spatial_softmax" else self.dim

    def backbone_config(self) -> dict:
        """The ResNetConfig, to rebuild the backbone offline."""
        return self.backbone.config.to_diff_dict()

    def blocks(self) -> nn.ModuleList:
        """The ResNet stages."""
        return self.backbone.encoder.stages


def replace_batchnorm(module: nn.Module, channels_per_group: int = 16) -> None:
    """Swaps every BatchNorm2d in ``module`` for a GroupNorm over the same channels, in place."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            groups = max(1, child.num_features // channels_per_group)
            setattr(module, name, nn.GroupNorm(groups, child.num_features))
        else:
            replace_batchnorm(child, channels_per_group)
