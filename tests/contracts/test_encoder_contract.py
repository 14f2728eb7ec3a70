"""Contract of every registered encoder (its config's ``tiny(name)`` preset): uint8 images in, tokens (B, N, dim)
and a pooled vector (B, pooled_dim) out, finite, differentiable, and shifted only in training."""

from __future__ import annotations

import pytest
import torch

from embodied.encoders import ENCODERS, make_encoder


@pytest.mark.parametrize("name", ENCODERS.names())
def test_encoder_maps_uint8_images_to_tokens_and_pooled(name):
    torch.manual_seed(0)
    encoder = make_encoder(ENCODERS.config_class(name).tiny(name))
    images = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    out = encoder(images)
    assert out.tokens.ndim == 3 and out.tokens.shape[0] == 2 and out.tokens.shape[-1] == encoder.dim
    assert out.pooled.shape == (2, encoder.pooled_dim)
    assert torch.isfinite(out.tokens).all() and torch.isfinite(out.pooled).all()
    out.pooled.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())
    encoder.eval()
    with torch.no_grad():
        torch.testing.assert_close(encoder(images).pooled, encoder(images).pooled)  # no augmentation in eval
    with pytest.raises(ValueError, match="uint8"):
        encoder(images.float())
