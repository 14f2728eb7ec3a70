"""Vision encoders behind one interface (:class:`Encoder`), registered by name (``policy.encoder.name``).

A new encoder plugs in with a config dataclass extending :class:`EncoderConfig` (with a ``tiny(name)`` preset for the
contract tests) and a class taking ``(config, backbone_config=None)``:

    ENCODERS.register("my_encoder", config=MyEncoderConfig)(MyEncoder)
"""

from __future__ import annotations

from typing import Any

from embodied.encoders.augment import random_shift
from embodied.encoders.base import Encoder, EncoderConfig, EncoderOutput
from embodied.encoders.cnn import CNNEncoder, CNNEncoderConfig
from embodied.encoders.dinosiglip import DinoSigLIPConfig, DinoSigLIPEncoder
from embodied.encoders.resnet import ResNetEncoder, ResNetEncoderConfig
from embodied.encoders.vit import FAMILIES, ViTEncoder, ViTEncoderConfig
from embodied.registry import Registry

ENCODERS: Registry[type[Encoder]] = Registry("encoder")
ENCODERS.register("cnn", config=CNNEncoderConfig)(CNNEncoder)
for _name in ("resnet18", "resnet50"):
    ENCODERS.register(_name, config=ResNetEncoderConfig)(ResNetEncoder)
for _name in FAMILIES.names():  # clip, dinov2, mae, siglip, vit
    ENCODERS.register(_name, config=ViTEncoderConfig)(ViTEncoder)
ENCODERS.register("dinosiglip", config=DinoSigLIPConfig)(DinoSigLIPEncoder)


def make_encoder(cfg: Any, backbone_config: dict | None = None) -> Encoder:
    """Builds an encoder from its config (dict, DictConfig or dataclass; validated by the encoder's schema).

    ``backbone_config`` (from a checkpoint) rebuilds the backbone's architecture without fetching weights.
    """
    config = ENCODERS.config_from(cfg)
    return ENCODERS.get(config.name)(config, backbone_config=backbone_config).apply_train_mode()


__all__ = ["ENCODERS", "Encoder", "EncoderConfig", "EncoderOutput", "make_encoder", "random_shift"]
