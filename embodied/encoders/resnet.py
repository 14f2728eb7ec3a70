"""ResNet through `transformers` (``ResNetModel``): from a hub id or a local directory with ``pretrained``,
or built from a config (ResNet-18 by default) with random weights when none is given. No torchvision.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from embodied.encoders.base import Encoder, EncoderConfig, EncoderOutput

RESNET18 = dict(layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512], embedding_size=64)


@dataclass
class ResNetEncoderConfig(EncoderConfig):
    name: str = "resnet18"
    pretrained: str | None = None  # hub id (e.g. microsoft/resnet-18) or local directory; null: random init


class ResNetEncoder(Encoder):
    """Tokens: the last stage's feature map, flattened (B, h*w, C); pooled: its global average (B, C)."""

    def __init__(self, config: ResNetEncoderConfig, backbone_config: dict | None = None):
        super().__init__(config)
        from transformers import ResNetConfig, ResNetModel

        if backbone_config is not None:  # restoring a checkpoint: its weights follow, no hub access
            self.backbone = ResNetModel(ResNetConfig(**backbone_config))
        elif config.pretrained:
            self.backbone = load_pretrained(ResNetModel, config.pretrained)
        else:
            self.backbone = ResNetModel(ResNetConfig(**RESNET18))
        self.dim = int(self.backbone.config.hidden_sizes[-1])

    def encode(self, pixels: torch.Tensor) -> EncoderOutput:
        out = self.backbone(pixel_values=pixels)
        return EncoderOutput(out.last_hidden_state.flatten(2).transpose(1, 2), out.pooler_output.flatten(1))

    def backbone_config(self) -> dict:
        return self.backbone.config.to_diff_dict()


def load_pretrained(model_class, name_or_path: str):
    """``model_class.from_pretrained`` with an error that says what to do offline."""
    try:
        return model_class.from_pretrained(name_or_path)
    except OSError as error:
        raise OSError(
            f"could not load pretrained weights {name_or_path!r}: pass a local directory holding config.json and "
            f"model.safetensors, or a hub id this machine can download (offline: set HF_HUB_OFFLINE=1 and use the "
            f"cache). Original error: {error}"
        ) from None
