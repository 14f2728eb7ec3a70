"""Training-time image augmentation on float (B, 3, H, W) pixels: DrQ's random shift and Diffusion Policy's crops."""

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


def _windows(pixels: torch.Tensor, corners: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """Per image b, the (out_h, out_w) window whose top-left corner is ``corners[b]`` (one gather, no loop)."""
    batch, channels, _, width = pixels.shape
    rows = torch.arange(out_h, device=pixels.device).view(1, out_h, 1) + corners[:, 0].view(batch, 1, 1)
    cols = torch.arange(out_w, device=pixels.device).view(1, 1, out_w) + corners[:, 1].view(batch, 1, 1)
    index = (rows * width + cols).view(batch, 1, out_h * out_w).expand(-1, channels, -1)
    return pixels.flatten(2).gather(2, index).view(batch, channels, out_h, out_w)
