"""The OpenVLA-style vision-language-action policy (``policy=openvla``): action tokenizer, language model, policy."""

from embodied.policies.vla.action_tokenizer import ActionTokenizer
from embodied.policies.vla.language_model import LanguageModelConfig, default_tokenizer
from embodied.policies.vla.policy import VLAConfig, VLAPolicy

__all__ = ["ActionTokenizer", "LanguageModelConfig", "VLAConfig", "VLAPolicy", "default_tokenizer"]
