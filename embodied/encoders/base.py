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
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from embodied.configs.checks import at_least, between, one_of
from embodied.encoders.augment import color_jitter, crop, random_shift

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TRAIN_MODES = ("finetune", "frozen", "last_n", "lora")


@dataclass
class EncoderConfig:
    """Fields every encoder has; each encoder's config dataclass extends it."""

    name: str = "cnn"  # registry name; selects the encoder class
    image_size: int | None = None  # resize (square) before the backbone; null: keep the camera's size
    train: str = "finetune"  # finetune | frozen | last_n | lora (| auto: the policy decides, openvla)
    last_n: int = 2  # train: last_n -> how many final blocks train
    lora_rank: int = 8  # train: lora -> adapter rank, alpha and dropout
    lora_alpha: int = 16  # LoRA scaling: the adapters' update is multiplied by alpha / rank
    lora_dropout: float = 0.0  # dropout on the adapters' input
    random_shift: int = 4  # training-time augmentation: shift by up to this many pixels (0: off)
    # training-time augmentation: random square crops of this fraction of the (resized) side, the centre crop
    # at evaluation (Diffusion Policy: 76 of 84 px, 0.9); 1.0: off
    crop: float = 1.0
    # training-time colour augmentation (Manipulate by Seeing: 0.2 and 0.05): random brightness, contrast and
    # saturation factors in [1 - color_jitter, 1 + color_jitter], and the probability of turning an image grey
    color_jitter: float = 0.0
    grayscale: float = 0.0

    CHECKS: ClassVar = {
        "train": one_of(*TRAIN_MODES, "auto"), "last_n": at_least(1), "lora_rank": at_least(1),
        "lora_dropout": between(0, 1, high_inclusive=False), "random_shift": at_least(0), "image_size": at_least(8),
        "color_jitter": between(0, 1), "grayscale": between(0, 1),
    }  # fmt: skip

    @classmethod
    def tiny(cls, name: str) -> EncoderConfig:
        """A CPU-sized instance registered as ``name``, for contract tests (every encoder config provides one)."""
        raise NotImplementedError(f"{cls.__name__} has no tiny() preset for the contract tests")


class EncoderOutput(NamedTuple):
    """What an encoder returns for a batch of images."""

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
        if config.train == "auto":
            raise ValueError(
                "encoder.train=auto is resolved by policies that define it (policy=openvla); choose one of "
                f"{', '.join(TRAIN_MODES)}"
            )
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
        if self.training and (self.config.color_jitter > 0 or self.config.grayscale > 0):
            pixels = color_jitter(pixels, self.config.color_jitter, self.config.grayscale)
        return pixels

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """[0, 1] pixels -> the backbone's normalisation (``(x - mean) / std``)."""
        return (pixels - self.mean) / self.std

    @property
    def input_size(self) -> int | None:
        """The square size images are resized to (``image_size``; subclasses may default to the backbone's)."""
        return self.config.image_size

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        """uint8 (B, H, W, 3) images -> tokens (B, N, D) and pooled (B, pooled_dim)."""
        return self.encode(self.preprocess(images))

    @property
    def pooled_dim(self) -> int:
        """The width of ``EncoderOutput.pooled``: :attr:`dim` unless the encoder projects its pooled vector."""
        return self.dim

    @property
    def frozen(self) -> bool:
        """Whether nothing trains (``train: frozen``)."""
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
        """Training mode; a frozen backbone stays in eval mode (see below)."""
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
