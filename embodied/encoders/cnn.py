"""A small convolutional encoder for training from scratch on a CPU.

Four 3x3 convolutions with GroupNorm, then a spatial softmax: each of ``keypoints`` feature maps becomes the
expected image coordinate of its activation (Levine et al. 2016; robomimic and Diffusion Policy use it in
place of average pooling because it keeps *where* things are, which is what manipulation needs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from embodied.encoders.base import Encoder, EncoderConfig, EncoderOutput


@dataclass
class CNNEncoderConfig(EncoderConfig):
    """``encoder=cnn``: a small convolutional encoder trained from scratch (sized for CPUs)."""

    name: str = "cnn"
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 64])  # ~11 it/s fwd+bwd, batch 64, 84 px, 2 cores
    strides: list[int] = field(default_factory=lambda: [2, 2, 2, 1])  # one per convolution
    keypoints: int = 32  # spatial-softmax maps; pooled = Linear(2 * keypoints -> dim)
    dim: int = 128  # token and pooled width

    @classmethod
    def tiny(cls, name: str = "cnn") -> CNNEncoderConfig:
        """Two 8-channel convolutions, 16-wide output."""
        return cls(name=name, channels=[8, 8], strides=[2, 2], dim=16)


class CNNEncoder(Encoder):
    """Convolutions -> tokens (the last feature map, flattened) and spatial-softmax keypoints -> pooled."""

    def __init__(self, config: CNNEncoderConfig, backbone_config: dict | None = None):
        # Pixels scaled to [-1, 1]: nothing here was pretrained on ImageNet statistics.
        super().__init__(config, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        if len(config.channels) != len(config.strides):
            raise ValueError("encoder.channels and encoder.strides need the same length")
        layers: list[nn.Module] = []
        in_channels = 3
        for out_channels, stride in zip(config.channels, config.strides):
            layers += [
                nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1),
                nn.GroupNorm(min(8, out_channels), out_channels),
                nn.ReLU(inplace=True),
            ]
            in_channels = out_channels
        self.convs = nn.Sequential(*layers)
        self.to_tokens = nn.Conv2d(in_channels, config.dim, 1)
        self.to_keypoints = nn.Conv2d(in_channels, config.keypoints, 1)
        self.pool = nn.Linear(2 * config.keypoints, config.dim)
        self.dim = config.dim

    def encode(self, pixels: torch.Tensor) -> EncoderOutput:
        """Feature-map tokens and spatial-softmax keypoints projected to ``dim``."""
        features = self.convs(pixels)
        tokens = self.to_tokens(features).flatten(2).transpose(1, 2)
        return EncoderOutput(tokens, self.pool(spatial_softmax(self.to_keypoints(features))))


def spatial_softmax(maps: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W) -> (B, 2K): per map, the softmax-weighted mean (x, y) position in [-1, 1]."""
    batch, k, height, width = maps.shape
    weights = maps.flatten(2).softmax(-1).view(batch, k, height, width)
    ys = torch.linspace(-1.0, 1.0, height, device=maps.device, dtype=maps.dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=maps.device, dtype=maps.dtype)
    x = (weights.sum(2) * xs).sum(-1)
    y = (weights.sum(3) * ys).sum(-1)
    return torch.stack([x, y], -1).flatten(1)
