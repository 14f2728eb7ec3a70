"""The OpenVLA-style vision-language-action policy (issue in progress): so far its action tokenizer."""

from embodied.policies.vla.action_tokenizer import ActionTokenizer

__all__ = ["ActionTokenizer"]
