"""The sentence encoder: real all-MiniLM-L6-v2 weights offline, the same vectors as an independent mean-pooling of
transformers' BertModel, each distinct text embedded once, clear errors."""

from __future__ import annotations

import pytest
import torch

from embodied.encoders.text import TextEncoderConfig, make_text_encoder, resolve_text_model

CAPTIONS = ["gripper open, reaching above the red cube", "gripper closing around the red cube",
            "the red cube grasped, lifting it"]  # fmt: skip


def test_vectors_match_mean_pooled_transformers_and_are_cached():
    from transformers import AutoModel, AutoTokenizer

    encoder = make_text_encoder({"model": "all-MiniLM-L6-v2"})
    vectors = encoder.encode(CAPTIONS)
    assert vectors.shape == (3, 384) and encoder.dim == 384
    path = resolve_text_model("all-MiniLM-L6-v2")
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    tokens = tokenizer(CAPTIONS, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**tokens).last_hidden_state
    mask = tokens["attention_mask"].unsqueeze(-1).float()
    reference = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    torch.testing.assert_close(vectors, reference, atol=1e-5, rtol=1e-4)
    # related captions are closer than unrelated ones (real weights, not an init)
    unrelated = encoder.encode(["a bowl of soup on a wooden table"])[0]
    assert vectors[1] @ vectors[2] > vectors[1] @ unrelated
    again = encoder.encode([CAPTIONS[0]])
    assert torch.equal(again[0], vectors[0]) and len(encoder._cache) == 4


def test_an_unreachable_model_is_named(monkeypatch):
    import huggingface_hub.constants

    # the hub's own offline mode (this machine has no network: without it the lookup waits ~70 s for timeouts)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match="text_encoder.model='no-such/model-anywhere'"):
        make_text_encoder(TextEncoderConfig(model="no-such/model-anywhere"))
