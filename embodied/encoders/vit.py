"""Vision transformers through `transformers`: ``vit``, ``dinov2``, ``siglip``, ``clip`` and ``mae`` (ViTMAE's
encoder), each from ``pretrained=<hub id or local directory>`` or built from its config (``model:`` overrides,
e.g. tiny sizes for tests) with random weights when none is given.

Each uses the normalisation its checkpoint expects: ``preprocessor_config.json``'s ``image_mean``/``image_std``
when the checkpoint (directory or hub id) has one, else the family's published values. Images are resized to
the backbone's ``image_size`` unless ``encoder.image_size`` says otherwise (position embeddings are then interpolated).

Tokens are the patch tokens (B, N, D) (no CLS), on the backbone's patch grid in row-major order; pooled is
``pool``: ``cls`` (the CLS token; SigLIP has none: its attention-pooling head stands in), ``mean`` (of the patch
tokens) or ``spatial_softmax`` (keypoints over the patch grid, Diffusion Policy's choice).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

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
from embodied.registry import Registry

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)
POOLS = ("cls", "mean", "spatial_softmax")


class Family(NamedTuple):
    """How to build one transformers vision family."""

    model: str  # transformers model class
    config: str  # transformers config class
    mean: tuple
    std: tuple
    has_cls: bool
    defaults: dict  # config values that differ from the class default for our use


# the transformer families, each also an encoder name (``encoder=dinov2``)
FAMILIES: Registry[Family] = Registry("transformer family")
FAMILIES.register("vit")(Family("ViTModel", "ViTConfig", HALF, HALF, True, {}))
FAMILIES.register("dinov2")(Family("Dinov2Model", "Dinov2Config", IMAGENET_MEAN, IMAGENET_STD, True, {}))
FAMILIES.register("siglip")(Family("SiglipVisionModel", "SiglipVisionConfig", HALF, HALF, False, {}))
FAMILIES.register("clip")(Family("CLIPVisionModel", "CLIPVisionConfig", CLIP_MEAN, CLIP_STD, True, {}))
# mask_ratio 0: as an encoder ViTMAE sees every patch (pretraining uses its own 0.75)
FAMILIES.register("mae")(Family("ViTMAEModel", "ViTMAEConfig", IMAGENET_MEAN, IMAGENET_STD, True, {"mask_ratio": 0.0}))


@dataclass
class ViTEncoderConfig(EncoderConfig):
    """``encoder=vit|dinov2|siglip|clip|mae``: a transformers vision transformer (the name picks the family)."""

    name: str = "dinov2"
    pretrained: str | None = None  # hub id or local directory; null: built from `model` with random weights
    model: dict = field(default_factory=dict)  # overrides of the transformers config when building from config
    pool: str = "cls"  # cls | mean | spatial_softmax
    keypoints: int = 32  # pool: spatial_softmax

    @classmethod
    def tiny(cls, name: str = "dinov2") -> ViTEncoderConfig:
        """2 layers, 32 wide, 8 px patches on 32 px images (a 4x4 grid)."""
        return cls(name=name, model=dict(TINY_VIT))


# a transformer small enough for tests: a 4x4 patch grid on 32 px images
TINY_VIT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
            "image_size": 32, "patch_size": 8}  # fmt: skip


class ViTEncoder(Encoder):
    """Patch tokens of a transformers vision transformer, pooled as ``pool`` says (see the module docstring)."""

    def __init__(self, config: ViTEncoderConfig, backbone_config: dict | None = None):
        if config.name not in FAMILIES:
            raise ValueError(f"no transformer family {config.name!r}; known: {', '.join(FAMILIES.names())}")
        family = FAMILIES.get(config.name)
        if config.pool not in POOLS:
            raise ValueError(f"encoder.pool must be one of {POOLS}, got {config.pool!r}")
        mean, std = checkpoint_normalisation(config.pretrained, family.mean, family.std)
        super().__init__(config, mean=mean, std=std)
        self.family = family
        self.backbone = build_backbone(family, config.pretrained, config.model, backbone_config)
        self.dim = int(self.backbone.config.hidden_size)
        self.patch_size = int(self.backbone.config.patch_size)
        if config.pool == "spatial_softmax":
            self.to_keypoints = nn.Linear(self.dim, config.keypoints)
            self.keypoint_proj = nn.Linear(2 * config.keypoints, self.dim)

    @property
    def input_size(self) -> int:
        """``image_size``, else the backbone's own."""
        return self.config.image_size or int(self.backbone.config.image_size)

    def encode(self, pixels: torch.Tensor) -> EncoderOutput:
        """Patch tokens (CLS dropped) and the pooled vector."""
        kwargs = {}
        if self.config.name == "mae":  # identity "noise": ViTMAE keeps patches in order instead of shuffling
            n = (pixels.shape[-2] // self.patch_size) * (pixels.shape[-1] // self.patch_size)
            kwargs["noise"] = torch.arange(n, device=pixels.device, dtype=pixels.dtype).expand(pixels.shape[0], n)
        if self.config.name != "dinov2":  # dinov2 always interpolates
            kwargs["interpolate_pos_encoding"] = self.input_size != int(self.backbone.config.image_size)
        out = self.backbone(pixel_values=pixels, **kwargs)
        hidden = out.last_hidden_state
        tokens = hidden[:, 1:] if self.family.has_cls else hidden
        return EncoderOutput(tokens, self.pool(hidden, tokens, out, pixels.shape[-2:]))

    def pool(self, hidden, tokens, out, size) -> torch.Tensor:
        """The pooled vector of ``pool`` from the backbone's output."""
        if self.config.pool == "mean":
            return tokens.mean(1)
        if self.config.pool == "cls":
            if self.family.has_cls:
                return hidden[:, 0]
            return out.pooler_output  # SigLIP's attention-pooling head
        grid_h, grid_w = size[0] // self.patch_size, size[1] // self.patch_size
        maps = self.to_keypoints(tokens).transpose(1, 2).reshape(tokens.shape[0], -1, grid_h, grid_w)
        return self.keypoint_proj(spatial_softmax(maps))

    def backbone_config(self) -> dict:
        """The transformers config, to rebuild the backbone offline."""
        return self.backbone.config.to_diff_dict()

    def blocks(self) -> nn.ModuleList:
        # found by name and type: transformers 5 moved ViT's blocks from encoder.layer to layers
        """The transformer layers."""
        for name, module in self.backbone.named_modules():
            if isinstance(module, nn.ModuleList) and name.split(".")[-1] in ("layers", "layer"):
                return module
        raise ValueError(f"no transformer blocks found in {type(self.backbone).__name__}")

    def grid(self) -> tuple[int, int]:
        """(rows, columns) of the patch grid at the input size."""
        side = self.input_size // self.patch_size
        return side, side


def build_backbone(family: Family, pretrained: str | None, overrides: dict, saved: dict | None):
    """A transformers model: rebuilt from a checkpoint's saved config, loaded from ``pretrained``, or built from
    the family's config with ``overrides``."""
    import transformers

    model_class = getattr(transformers, family.model)
    config_class = getattr(transformers, family.config)
    if saved is not None:
        return model_class(config_class(**saved), **_model_kwargs(family))
    if pretrained:
        return load_pretrained(model_class, pretrained, **_model_kwargs(family))
    return model_class(config_class(**{**family.defaults, **dict(overrides)}), **_model_kwargs(family))


def _model_kwargs(family: Family) -> dict:
    return {"add_pooling_layer": False} if family.model == "ViTModel" else {}
