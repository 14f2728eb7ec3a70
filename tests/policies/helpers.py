"""Helpers shared by the policy tests."""

from __future__ import annotations

from pathlib import Path

import torch


def save_pretrained_lm(path: Path, lm: dict) -> Path:
    """A 'pretrained' Llama with the VLA's default tokenizer in a local directory (built from config and saved, as a
    hub checkpoint would be); ``lm``: its sizes."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    from embodied.policies.openvla.language_model import default_tokenizer

    tokenizer = default_tokenizer()
    torch.manual_seed(1)
    config = LlamaConfig(vocab_size=len(tokenizer), **lm, bos_token_id=1, eos_token_id=2, pad_token_id=3)
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
