"""Training-time image augmentation on float (B, 3, H, W) pixels: DrQ's random shift, Diffusion Policy's crops and
Manipulate by Seeing's colour jitter."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_shift(pixels: torch.Tensor, pad: int) -> torch.Tensor:
    """Shifts each image by a random whole number of pixels in [-pad, pad] with edge padding (DrQ's augmentation):
    cheap, and the main defence of image BC against overfitting."""
    batch, _, height, width = pixels.shape
    padded = F.pad(pixels, (pad, pad, pad, pad), mode="replicate")
    corners = torch.randint(0, 2 * pad + 1, (batch, 2), device=pixels.device)
    return _windows(padded, corners, height, width)


def crop(pixels: torch.Tensor, fraction: float, random: bool) -> torch.Tensor:
    """Square crops of ``fraction`` of each side: at a random place per image (``random``, training) or the
    centre (evaluation), Diffusion Policy's augmentation (robomimic's CropRandomizer); ``fraction`` in (0, 1] is
    checked where the encoder's config is."""
    batch, _, height, width = pixels.shape
    out_h, out_w = max(1, round(height * fraction)), max(1, round(width * fraction))
    if random:
        corners = torch.stack(
            [
                torch.randint(0, height - out_h + 1, (batch,), device=pixels.device),
                torch.randint(0, width - out_w + 1, (batch,), device=pixels.device),
            ],
            1,
        )
        return _windows(pixels, corners, out_h, out_w)
    top, left = (height - out_h) // 2, (width - out_w) // 2
    return pixels[:, :, top : top + out_h, left : left + out_w]


def color_jitter(pixels: torch.Tensor, strength: float, grayscale: float = 0.0) -> torch.Tensor:
    """Per image, random brightness, contrast and saturation factors in [1 - strength, 1 + strength] (applied in
    that order, as torchvision's ColorJitter does in its default order), then grey with probability ``grayscale``;
    pixels in [0, 1] stay there. Batched: one set of factors per image, no Python loop."""
    batch = pixels.shape[0]

    def factors() -> torch.Tensor:
        return torch.empty(batch, 1, 1, 1, device=pixels.device).uniform_(1 - strength, 1 + strength)

    def grey(x: torch.Tensor) -> torch.Tensor:  # ITU-R 601 luma, as PIL and torchvision
        return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)

    out = pixels
    if strength > 0:
        out = (out * factors()).clamp(0, 1)
        mean = grey(out).mean(dim=(1, 2, 3), keepdim=True)
        out = (mean + factors() * (out - mean)).clamp(0, 1)
        out = (grey(out) + factors() * (out - grey(out))).clamp(0, 1)
    if grayscale > 0:
        turn = torch.rand(batch, 1, 1, 1, device=pixels.device) < grayscale
        out = torch.where(turn, grey(out), out)
    return out


def _windows(pixels: torch.Tensor, corners: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """Per image b, the (out_h, out_w) window whose top-left corner is ``corners[b]`` (one gather, no loop)."""
    batch, channels, _, width = pixels.shape
    rows = torch.arange(out_h, device=pixels.device).view(1, out_h, 1) + corners[:, 0].view(batch, 1, 1)
    cols = torch.arange(out_w, device=pixels.device).view(1, 1, out_w) + corners[:, 1].view(batch, 1, 1)
    index = (rows * width + cols).view(batch, 1, out_h * out_w).expand(-1, channels, -1)
    return pixels.flatten(2).gather(2, index).view(batch, channels, out_h, out_w)
