"""Encoders: output shapes, preprocessing, freezing, loading a transformers ResNet from a local directory."""

from __future__ import annotations

import pytest
import torch

from embodied.encoders import ENCODERS, make_encoder, random_shift
from embodied.encoders.base import IMAGENET_MEAN, IMAGENET_STD

TINY_RESNET = dict(layer_type="basic", depths=[1, 1], hidden_sizes=[8, 16], embedding_size=8)


def images(batch=2, size=40, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=generator)


@pytest.mark.parametrize("name", ["cnn", "resnet18"])
def test_output_shapes(name):
    encoder = make_encoder({"name": name}).eval()
    out = encoder(images(batch=3, size=48))
    assert out.pooled.shape == (3, encoder.dim)
    assert out.tokens.ndim == 3 and out.tokens.shape[0] == 3 and out.tokens.shape[2] == encoder.dim
    assert torch.isfinite(out.tokens).all() and torch.isfinite(out.pooled).all()


def test_registry_names_and_unknown_field():
    assert {"cnn", "resnet18"} <= set(ENCODERS.names())
    with pytest.raises(Exception, match="no_such_field"):
        make_encoder({"name": "cnn", "no_such_field": 1})
    with pytest.raises(KeyError, match="registered: .*cnn"):
        make_encoder({"name": "vit_nope"})


def test_preprocessing_resizes_and_normalises():
    encoder = make_encoder({"name": "resnet18", "image_size": 32}).eval()
    gray = torch.full((1, 20, 20, 3), 128, dtype=torch.uint8)
    pixels = encoder.preprocess(gray)
    assert pixels.shape == (1, 3, 32, 32)
    expected = (128 / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(pixels[0, :, 5, 5], expected)
    with pytest.raises(ValueError, match="uint8"):
        encoder.preprocess(gray.float())


def test_random_shift_only_while_training():
    encoder = make_encoder({"name": "cnn", "random_shift": 4})
    x = images(batch=8, size=32)
    encoder.eval()
    torch.testing.assert_close(encoder.preprocess(x), encoder.preprocess(x))
    encoder.train()
    assert not torch.equal(encoder.preprocess(x), encoder.preprocess(x))


def test_random_shift_moves_whole_image_by_integers():
    """Each image is its input moved by whole pixels (dy, dx) in [-pad, pad] with the edge replicated, the shifts
    differ between images, and they cover the range."""
    torch.manual_seed(0)
    pad = 2
    pixels = torch.arange(64 * 3 * 6 * 6, dtype=torch.float32).view(64, 3, 6, 6)
    shifted = random_shift(pixels, pad)
    padded = torch.nn.functional.pad(pixels, (pad,) * 4, mode="replicate")
    found = []
    for b in range(64):
        shifts = [(dy, dx) for dy in range(-pad, pad + 1) for dx in range(-pad, pad + 1)]
        window = {(dy, dx): padded[b, :, pad + dy : pad + dy + 6, pad + dx : pad + dx + 6] for dy, dx in shifts}
        matches = [shift for shift in shifts if torch.equal(shifted[b], window[shift])]
        assert len(matches) == 1, f"image {b} is not a whole-pixel shift of its input"
        found.append(matches[0])
    assert len(set(found)) >= 15  # 25 possible shifts over 64 images: not one fixed shift (or none)
    assert {dy for dy, _ in found} == {dx for _, dx in found} == set(range(-pad, pad + 1))
    torch.testing.assert_close(random_shift(pixels, 0), pixels)


def test_crop_is_random_in_training_and_central_in_evaluation():
    encoder = make_encoder({"name": "cnn", "random_shift": 0, "crop": 0.9})
    x = images(batch=16, size=40)
    encoder.eval()
    centre = encoder.to_pixels(x)
    assert centre.shape == (16, 3, 36, 36)
    full = x.permute(0, 3, 1, 2).float() / 255
    torch.testing.assert_close(centre, full[:, :, 2:38, 2:38])
    encoder.train()
    crops = encoder.to_pixels(x)
    assert crops.shape == (16, 3, 36, 36) and not torch.equal(crops, centre)
    for b in range(16):  # each crop is a window of its own image
        found = any(torch.equal(crops[b], full[b, :, i : i + 36, j : j + 36]) for i in range(5) for j in range(5))
        assert found
    with pytest.raises(ValueError, match="crop"):
        make_encoder({"name": "cnn", "crop": 1.5})


def test_resnet_spatial_softmax_pooled_width():
    encoder = make_encoder(
        {"name": "resnet18", "norm": "group", "pool": "spatial_softmax", "pooled_dim": 64, "model": TINY_RESNET}
    )
    out = encoder(images(batch=2, size=32))
    assert encoder.pooled_dim == 64 and out.pooled.shape == (2, 64) and out.tokens.shape[-1] == encoder.dim


def test_frozen_encoder_has_no_trainable_parameters_and_stays_in_eval():
    encoder = make_encoder({"name": "resnet18", "train": "frozen"}).apply_train_mode()
    encoder.train()
    assert not any(p.requires_grad for p in encoder.parameters())
    assert not encoder.backbone.training  # batch-norm statistics stay fixed
    assert encoder.training  # augmentation still follows the mode


def test_resnet_from_local_pretrained_directory(tmp_path):
    from transformers import ResNetConfig, ResNetModel

    reference = ResNetModel(ResNetConfig(**TINY_RESNET)).eval()
    reference.save_pretrained(tmp_path / "tiny_resnet")
    encoder = make_encoder({"name": "resnet18", "pretrained": str(tmp_path / "tiny_resnet")}).eval()
    assert encoder.dim == 16
    x = images(batch=2, size=32)
    pixels = encoder.preprocess(x)
    torch.testing.assert_close(encoder(x).pooled, reference(pixel_values=pixels).pooler_output.flatten(1))
    rebuilt = make_encoder({"name": "resnet18"}, backbone_config=encoder.backbone_config())
    assert rebuilt.dim == 16 and rebuilt.backbone.config.depths == [1, 1]


def test_missing_pretrained_path_says_what_to_do(tmp_path):
    with pytest.raises(OSError, match="local directory"):
        make_encoder({"name": "resnet18", "pretrained": str(tmp_path / "nowhere")})


def test_color_jitter_and_grayscale_only_while_training():
    from embodied.encoders.augment import color_jitter

    pixels = torch.rand(6, 3, 16, 16)
    torch.testing.assert_close(color_jitter(pixels, 0.0, 0.0), pixels)
    jittered = color_jitter(pixels, 0.4)
    assert not torch.equal(jittered, pixels) and jittered.min() >= 0 and jittered.max() <= 1
    grey = color_jitter(pixels, 0.0, grayscale=1.0)
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    encoder = make_encoder({"name": "cnn", "random_shift": 0, "color_jitter": 0.3, "grayscale": 0.5})
    x = images(batch=8, size=32)
    encoder.eval()
    torch.testing.assert_close(encoder.preprocess(x), encoder.preprocess(x))
    encoder.train()
    assert not torch.equal(encoder.preprocess(x), encoder.preprocess(x))
