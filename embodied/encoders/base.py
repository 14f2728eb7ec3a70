"""The encoder interface: uint8 camera images in, a token sequence and a pooled vector out.

An encoder owns its preprocessing (resize, scaling, normalisation, training-time augmentation), so a policy
hands it the raw ``(B, H, W, 3)`` uint8 frames that envs and stores produce and never needs to know which
backbone's statistics apply.

Adaptation (``train``): ``finetune`` trains every weight; ``frozen`` none (the backbone also stays in eval mode,
so batch-norm statistics never drift); ``last_n`` only the last ``last_n`` blocks (and what follows them);
``lora`` only low-rank adapters that peft injects into the backbone's attention and MLP linears.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TRAIN_MODES = ("finetune", "frozen", "last_n", "lora")


@dataclass
class EncoderConfig:
    """Fields every encoder has; each encoder's config dataclass extends it."""

    name: str = "cnn"
    image_size: int | None = None  # resize (square) before the backbone; null: keep the camera's size
    train: str = "finetune"  # finetune | frozen | last_n | lora
    last_n: int = 2  # train: last_n -> how many final blocks train
    lora_rank: int = 8  # train: lora -> adapter rank, alpha and dropout
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    random_shift: int = 4  # training-time augmentation: shift by up to this many pixels (0: off)
    # training-time augmentation: random square crops of this fraction of the (resized) side, the centre crop
    # at evaluation (Diffusion Policy: 76 of 84 px, 0.9); 1.0: off
    crop: float = 1.0


class EncoderOutput(NamedTuple):
    tokens: torch.Tensor  # (B, N, D): spatial features or patch tokens
    pooled: torch.Tensor  # (B, D): one vector per image


class Encoder(nn.Module):
    """Base class: subclasses implement :meth:`encode` on preprocessed float images.

    Attributes:
        dim: D, the width of the tokens (and of the pooled vector unless :attr:`pooled_dim` says otherwise).
        mean, std: per-channel normalisation applied after scaling pixels to [0, 1].
    """

    dim: int

    def __init__(self, config: EncoderConfig, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        if config.train not in TRAIN_MODES:
            raise ValueError(f"encoder.train must be one of {TRAIN_MODES}, got {config.train!r}")
        if not 0.0 < config.crop <= 1.0:
            raise ValueError(f"encoder.crop must be in (0, 1] (1: no cropping), got {config.crop}")
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

    def blocks(self) -> nn.ModuleList | None:
        """The backbone's sequence of blocks (transformer layers, ResNet stages), for ``train: last_n``."""
        return None

    def lora_targets(self) -> list[str] | None:
        """Module names peft adapts for ``train: lora``: every linear (attention and MLP) and convolution inside
        the blocks, found by type so it holds across transformers' renames; None: no blocks, no LoRA."""
        blocks = self.blocks()
        if blocks is None:
            return None
        inside = {id(m) for m in blocks.modules()}
        return [
            name
            for name, module in self.backbone.named_modules()
            if id(module) in inside and isinstance(module, (nn.Linear, nn.Conv2d))
        ]

    # ------------------------------------------------------------------ shared behaviour
    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) -> normalised float (B, 3, h, w), randomly shifted in training mode."""
        return self.normalize(self.to_pixels(images))

    def to_pixels(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) -> float (B, 3, h, w) in [0, 1], resized, randomly shifted in training mode."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(
                f"encoders take uint8 images of shape (B, H, W, 3), got {tuple(images.shape)} {images.dtype}"
            )
        # contiguous NCHW: a permuted (channels-last) tensor sends the CPU convolutions down a slower path with
        # layout copies around every GroupNorm (ResNet-18 at 76 px: 72 -> ~30 ms for two images)
        pixels = images.permute(0, 3, 1, 2).contiguous().float().div_(255.0)
        size = self.input_size
        if size is not None and tuple(pixels.shape[-2:]) != (size, size):
            pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        if self.config.crop < 1.0:
            pixels = crop(pixels, self.config.crop, random=self.training)
        if self.training and self.config.random_shift > 0:
            pixels = random_shift(pixels, self.config.random_shift)
        return pixels

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels - self.mean) / self.std

    @property
    def input_size(self) -> int | None:
        """The square size images are resized to (``image_size``; subclasses may default to the backbone's)."""
        return self.config.image_size

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        return self.encode(self.preprocess(images))

    @property
    def pooled_dim(self) -> int:
        """The width of ``EncoderOutput.pooled``: :attr:`dim` unless the encoder projects its pooled vector."""
        return self.dim

    @property
    def frozen(self) -> bool:
        return self.config.train == "frozen"

    def apply_train_mode(self) -> Encoder:
        """Sets which parameters train (see the module docstring); :func:`make_encoder` calls it once, before any
        checkpoint weights are loaded (LoRA adds modules, so a restored encoder must have them first)."""
        mode = self.config.train
        if mode == "frozen":
            self.requires_grad_(False)
        elif mode == "last_n":
            blocks = self.blocks()
            if blocks is None:
                raise ValueError(f"encoder {self.config.name!r} has no blocks for train=last_n; use finetune or frozen")
            if not 1 <= self.config.last_n <= len(blocks):
                raise ValueError(f"encoder.last_n must be in [1, {len(blocks)}], got {self.config.last_n}")
            backbone = self.backbone
            in_backbone = {id(p) for p in backbone.parameters()}
            trainable = {id(p) for block in list(blocks)[-self.config.last_n :] for p in block.parameters()}
            trainable |= {id(p) for name, p in backbone.named_parameters() if _after_blocks(name)}  # final norms
            trainable |= {id(p) for p in self.parameters() if id(p) not in in_backbone}  # our pooling heads
            for parameter in self.parameters():
                parameter.requires_grad_(id(parameter) in trainable)
        elif mode == "lora":
            self._inject_lora()
        return self

    def _inject_lora(self) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        targets = self.lora_targets()
        if targets is None:
            raise ValueError(f"encoder {self.config.name!r} does not support train=lora; use finetune, frozen, last_n")
        config = LoraConfig(
            r=self.config.lora_rank,
            lora_alpha=self.config.lora_alpha,
            lora_dropout=self.config.lora_dropout,
            target_modules=targets,
        )
        self.backbone.requires_grad_(False)
        inject_adapter_in_model(config, self.backbone)
        for name, parameter in self.backbone.named_parameters():
            parameter.requires_grad_("lora_" in name)

    def parameter_counts(self) -> dict[str, int]:
        """Trainable and total parameter counts (logged at the start of training)."""
        return {
            "trainable": sum(p.numel() for p in self.parameters() if p.requires_grad),
            "total": sum(p.numel() for p in self.parameters()),
        }

    def train(self, mode: bool = True) -> Encoder:
        # A frozen backbone stays in eval mode (batch-norm statistics fixed); augmentation still follows `mode`.
        super().train(mode)
        if self.frozen:
            for module in self.children():
                module.eval()
        return self


_POST_BLOCK_NAMES = ("layernorm", "post_layernorm", "pooler", "head", "norm")


def _after_blocks(name: str) -> bool:
    """Whether a backbone parameter sits after its blocks (a final norm or pooler), by transformers' names."""
    first = name.split(".")[0] if not name.startswith("vision_model.") else name.split(".")[1]
    return first in _POST_BLOCK_NAMES


def load_pretrained(model_class, name_or_path: str, **kwargs):
    """``model_class.from_pretrained`` with an error that says what to do offline; a local directory we wrote
    (``embodied pretrain``'s output) is checked against its ``checksums.json`` first."""
    from pathlib import Path

    from embodied.integrity import verify_manifest

    if Path(name_or_path).is_dir():
        verify_manifest(name_or_path, what="pretrained directory")
    try:
        return model_class.from_pretrained(name_or_path, **kwargs)
    except OSError as error:
        raise OSError(
            f"could not load pretrained weights {name_or_path!r}: pass a local directory holding config.json and "
            f"model.safetensors, or a hub id this machine can download (offline: set HF_HUB_OFFLINE=1 and use the "
            f"cache). Original error: {error}"
        ) from None


def checkpoint_normalisation(pretrained: str | None, mean: tuple, std: tuple) -> tuple[tuple, tuple]:
    """``image_mean``/``image_std`` from a checkpoint's ``preprocessor_config.json`` (a local directory or a hub id,
    through transformers' file resolution and cache), else the given defaults."""
    if not pretrained:
        return mean, std
    import json

    from transformers.utils import cached_file

    try:
        path = cached_file(
            pretrained,
            "preprocessor_config.json",
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
    except (OSError, ValueError):
        path = None
    if path:
        processor = json.loads(open(path).read())
        if "image_mean" in processor and "image_std" in processor:
            return tuple(processor["image_mean"]), tuple(processor["image_std"])
    return mean, std


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
