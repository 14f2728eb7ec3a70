"""The encoder interface: uint8 camera images in, a token sequence and a pooled vector out.

An encoder owns its preprocessing (resize, scaling, normalisation, training-time augmentation), so a policy
hands it the raw ``(B, H, W, 3)`` uint8 frames that envs and stores produce and never needs to know which
backbone's statistics apply. It can be trained fully or frozen (``train: frozen``): a frozen encoder keeps
its normalisation layers in eval mode and contributes no parameters to the optimiser.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TRAIN_MODES = ("full", "frozen")


@dataclass
class EncoderConfig:
    """Fields every encoder has; each encoder's config dataclass extends it."""

    name: str = "cnn"
    image_size: int | None = None  # resize (square) before the backbone; null: keep the camera's size
    train: str = "full"  # full | frozen
    random_shift: int = 4  # training-time augmentation: shift by up to this many pixels (0: off)


class EncoderOutput(NamedTuple):
    tokens: torch.Tensor  # (B, N, D): spatial features or patch tokens
    pooled: torch.Tensor  # (B, D): one vector per image


class Encoder(nn.Module):
    """Base class: subclasses implement :meth:`encode` on preprocessed float images.

    Attributes:
        dim: D, the width of tokens and of the pooled vector.
        mean, std: per-channel normalisation applied after scaling pixels to [0, 1].
    """

    dim: int

    def __init__(self, config: EncoderConfig, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        if config.train not in TRAIN_MODES:
            raise ValueError(f"encoder.train must be one of {TRAIN_MODES}, got {config.train!r}")
        self.config = config
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    # ------------------------------------------------------------------ to implement
    def encode(self, pixels: torch.Tensor) -> EncoderOutput:
        """``pixels``: (B, 3, h, w) float, normalised. Returns tokens (B, N, D) and pooled (B, D)."""
        raise NotImplementedError

    def backbone_config(self) -> dict | None:
        """The backbone's own config (e.g. a transformers ``ResNetConfig`` as a dict), saved in checkpoints so
        the encoder can be rebuilt offline with no hub access; None when ``EncoderConfig`` says it all."""
        return None

    # ------------------------------------------------------------------ shared behaviour
    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) -> normalised float (B, 3, h, w), randomly shifted in training mode."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(
                f"encoders take uint8 images of shape (B, H, W, 3), got {tuple(images.shape)} {images.dtype}"
            )
        pixels = images.permute(0, 3, 1, 2).float().div_(255.0)
        size = self.config.image_size
        if size is not None and tuple(pixels.shape[-2:]) != (size, size):
            pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        if self.training and self.config.random_shift > 0:
            pixels = random_shift(pixels, self.config.random_shift)
        return (pixels - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        return self.encode(self.preprocess(images))

    @property
    def frozen(self) -> bool:
        return self.config.train == "frozen"

    def apply_train_mode(self) -> Encoder:
        """Freezes the parameters when ``train: frozen`` (call after loading weights)."""
        if self.frozen:
            for parameter in self.parameters():
                parameter.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> Encoder:
        # A frozen backbone stays in eval mode (batch-norm statistics fixed); augmentation still follows `mode`.
        super().train(mode)
        if self.frozen:
            for module in self.children():
                module.eval()
        return self


def random_shift(pixels: torch.Tensor, pad: int) -> torch.Tensor:
    """Shifts each image by a random whole number of pixels in [-pad, pad] with edge padding (DrQ's augmentation,
    also used by diffusion_policy's crop): cheap, and the main defence of image BC against overfitting."""
    batch, _, height, width = pixels.shape
    padded = F.pad(pixels, (pad, pad, pad, pad), mode="replicate")
    shifts = torch.randint(0, 2 * pad + 1, (batch, 2), device=pixels.device)
    rows = torch.arange(height, device=pixels.device).view(1, height, 1) + shifts[:, 0].view(batch, 1, 1)
    cols = torch.arange(width, device=pixels.device).view(1, 1, width) + shifts[:, 1].view(batch, 1, 1)
    index = (rows * (width + 2 * pad) + cols).view(batch, 1, height * width).expand(-1, pixels.shape[1], -1)
    flat = padded.flatten(2).gather(2, index)
    return flat.view_as(pixels)
