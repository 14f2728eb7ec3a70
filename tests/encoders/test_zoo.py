"""The transformer zoo, fused DINOv2+SigLIP, ResNet options and adaptation modes, all from tiny configs."""

from __future__ import annotations

import json

import pytest
import torch

from embodied.encoders import ENCODERS, make_encoder
from embodied.encoders.vit import CLIP_MEAN, FAMILIES

TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "image_size": 32,
    "patch_size": 8,
}
TRANSFORMERS = FAMILIES.names()  # clip, dinov2, mae, siglip, vit


def tiny(name, **fields):
    return {"name": name, "model": dict(TINY), **fields}


def images(batch=2, size=40, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=generator)


def test_every_zoo_member_is_registered():
    assert set(ENCODERS.names()) >= {
        "cnn",
        "resnet18",
        "resnet50",
        "vit",
        "dinov2",
        "siglip",
        "clip",
        "mae",
        "dinosiglip",
    }


@pytest.mark.parametrize("name", TRANSFORMERS)
@pytest.mark.parametrize("pool", ["cls", "mean", "spatial_softmax"])
def test_transformer_shapes(name, pool):
    encoder = make_encoder(tiny(name, pool=pool)).eval()
    out = encoder(images(batch=3, size=40))  # resized to the backbone's 32 px -> a 4x4 patch grid
    assert out.tokens.shape == (3, 16, 32) and out.pooled.shape == (3, 32)
    assert out.tokens.dtype == torch.float32 and torch.isfinite(out.pooled).all()


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_save_and_load_round_trip_gives_identical_features(name, tmp_path):
    encoder = make_encoder(tiny(name)).eval()
    encoder.backbone.save_pretrained(tmp_path / name)
    loaded = make_encoder({"name": name, "pretrained": str(tmp_path / name)}).eval()
    x = images()
    torch.testing.assert_close(loaded(x).tokens, encoder(x).tokens)
    torch.testing.assert_close(loaded(x).pooled, encoder(x).pooled)


def test_normalisation_follows_the_checkpoint(tmp_path):
    assert tuple(make_encoder(tiny("clip")).mean.flatten().tolist()) == pytest.approx(CLIP_MEAN)
    assert make_encoder(tiny("siglip")).std.flatten().tolist() == [0.5, 0.5, 0.5]
    encoder = make_encoder(tiny("dinov2"))
    encoder.backbone.save_pretrained(tmp_path / "d")
    (tmp_path / "d" / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.1, 0.2, 0.3], "image_std": [0.4, 0.5, 0.6]})
    )
    loaded = make_encoder({"name": "dinov2", "pretrained": str(tmp_path / "d")})
    assert loaded.mean.flatten().tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert loaded.std.flatten().tolist() == pytest.approx([0.4, 0.5, 0.6])


def test_mae_encodes_every_patch_in_order():
    """Token k is patch k of the 4x4 grid, row-major, and nothing is masked: with no transformer layers (so attention
    cannot mix patches), changing the pixels of one patch changes exactly its token. ViTMAE's pretraining shuffles
    and drops 75% of the patches with random noise; an encoder that kept that would fail here."""
    encoder = make_encoder(tiny("mae", model={**TINY, "num_hidden_layers": 0}, random_shift=0)).eval()
    x = images(batch=1, size=32)  # the backbone's own size: no resize blends neighbouring patches
    before = encoder(x).tokens
    torch.testing.assert_close(before, encoder(x).tokens)  # deterministic: no random masking
    for row, col in ((0, 0), (1, 2), (3, 3)):
        changed = x.clone()
        changed[:, row * 8 : (row + 1) * 8, col * 8 : (col + 1) * 8] = 255 - changed[:, row * 8 : (row + 1) * 8,
                                                                                  col * 8 : (col + 1) * 8]  # fmt: skip
        moved = (encoder(changed).tokens - before).abs().amax(-1)[0]  # (16,) change per token
        assert before.shape == (1, 16, 32)
        assert moved.argmax().item() == row * 4 + col and (moved > 1e-6).sum().item() == 1


def test_other_image_size_interpolates_position_embeddings():
    for name in ("vit", "siglip", "clip", "dinov2"):
        out = make_encoder(tiny(name, image_size=48)).eval()(images(size=48))
        assert out.tokens.shape == (2, 36, 32), name


def test_adaptation_modes():
    frozen = make_encoder(tiny("vit", train="frozen"))
    assert frozen.parameter_counts()["trainable"] == 0
    lora = make_encoder(tiny("dinov2", train="lora", lora_rank=4))
    trainable = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    # every linear of both blocks has an adapter pair: q, k, v, output projections and the two MLP layers
    assert len(trainable) == 2 * 2 * 6
    assert any("fc1" in n for n in trainable) and any("attention" in n for n in trainable)
    counts = lora.parameter_counts()
    assert 0 < counts["trainable"] < counts["total"] / 2
    last = make_encoder(tiny("siglip", train="last_n", last_n=1))
    trainable = {n for n, p in last.named_parameters() if p.requires_grad}
    assert any("layers.1." in n for n in trainable) and not any("layers.0." in n for n in trainable)
    assert any("post_layernorm" in n for n in trainable)
    assert not any("embeddings" in n for n in trainable)
    with pytest.raises(ValueError, match="last_n"):
        make_encoder(tiny("vit", train="last_n", last_n=5))
    with pytest.raises(ValueError, match="lora"):
        make_encoder({"name": "cnn", "train": "lora"})


def test_lora_trains_only_adapters_and_changes_features():
    encoder = make_encoder(tiny("clip", train="lora"))
    before = {n: p.detach().clone() for n, p in encoder.named_parameters()}
    optimizer = torch.optim.SGD([p for p in encoder.parameters() if p.requires_grad], lr=0.5)
    for _ in range(2):
        encoder(images()).pooled.square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    changed = {n for n, p in encoder.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)


def test_dinosiglip_concatenates_matching_grids():
    config = {
        "name": "dinosiglip",
        "dinov2": {"model": dict(TINY)},
        "siglip": {"model": {**TINY, "hidden_size": 16, "num_attention_heads": 2}},
    }
    encoder = make_encoder(config).eval()
    assert encoder.dim == 48
    out = encoder(images(size=32))
    assert out.tokens.shape == (2, 16, 48) and out.pooled.shape == (2, 48)
    dino = encoder.halves["dinov2"](images(size=32)).tokens
    torch.testing.assert_close(out.tokens[..., :32], dino)  # the first channels are DINOv2's own tokens
    mismatched = {**config, "siglip": {"model": {**TINY, "patch_size": 16}}}
    with pytest.raises(ValueError, match="grids to match"):
        make_encoder(mismatched)


def test_dinosiglip_restores_from_saved_backbone_configs():
    config = {"name": "dinosiglip", "dinov2": {"model": dict(TINY)}, "siglip": {"model": dict(TINY)}, "train": "lora"}
    encoder = make_encoder(config).eval()
    rebuilt = make_encoder(config, backbone_config=encoder.backbone_config()).eval()
    rebuilt.load_state_dict(encoder.state_dict())
    torch.testing.assert_close(rebuilt(images(size=32)).pooled, encoder(images(size=32)).pooled)


def test_resnet50_groupnorm_and_spatial_softmax():
    tiny_bottleneck = {"depths": [1, 1], "hidden_sizes": [32, 64], "embedding_size": 16}
    encoder = make_encoder(
        {"name": "resnet50", "model": tiny_bottleneck, "norm": "group", "pool": "spatial_softmax"}
    ).eval()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in encoder.modules())
    assert any(isinstance(m, torch.nn.GroupNorm) for m in encoder.modules())
    out = encoder(images(size=64))
    assert out.pooled.shape == (2, 64) and out.tokens.shape[-1] == 64
    assert make_encoder({"name": "resnet18", "train": "last_n", "last_n": 1}).parameter_counts()["trainable"] > 0
