"""FiLM conditioning of a policy's camera features on its language instruction (``policy.film_instruction=true``).

Lang4Sim2Real's policies FiLM-condition on the instruction, and prefix it with the domain ("source domain: lift the
red cube"), so one policy trained on both domains knows which one it acts in; the franka envs' ``instruction_prefix``
puts that prefix into the observations and therefore the stores. The instruction is embedded by a pretrained
sentence encoder (:mod:`embodied.encoders.text`, all-MiniLM-L6-v2 offline by default), once per distinct string;
a linear layer maps the embedding to a per-feature scale and bias applied to every camera's pooled features (the
paper FiLMs inside the ResNet's blocks; here after pooling, so cached features and any encoder work alike). The
layer starts at zero, so a fresh policy is exactly the unconditioned one.

The sentence encoder is frozen and kept out of the policy's modules: its weights are neither trained nor saved in
checkpoints (only its config is, and it is rebuilt from it on load).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from embodied.features import INSTRUCTION


class InstructionFiLM(nn.Module):
    """``features * (1 + scale(instruction)) + bias(instruction)`` over the last dimension of width ``width``."""

    def __init__(self, width: int, text_encoder=None):
        super().__init__()
        from embodied.encoders.text import make_text_encoder

        self._text = (make_text_encoder(text_encoder),)  # a tuple: not a submodule, so never trained or saved
        self.affine = nn.Linear(self._text[0].dim, 2 * width)
        nn.init.zeros_(self.affine.weight)
        nn.init.zeros_(self.affine.bias)

    def embed(self, instructions: Sequence[str]) -> torch.Tensor:
        """(B, text dim) embeddings of the instructions, on the layer's device."""
        return self._text[0].encode(list(instructions)).to(self.affine.weight.device)

    def forward(self, features: torch.Tensor, instructions: Sequence[str] | None) -> torch.Tensor:
        """``features`` (B, ..., width) conditioned on one instruction per row."""
        if instructions is None or len(instructions) != features.shape[0]:
            raise KeyError(
                f"policy.film_instruction=true needs one instruction per observation: obs['{INSTRUCTION}'] = a list "
                f"of {features.shape[0]} strings (got {instructions!r})"
            )
        scale, bias = self.affine(self.embed(instructions)).chunk(2, dim=-1)
        shape = (features.shape[0],) + (1,) * (features.ndim - 2) + (features.shape[-1],)
        return features * (1 + scale.view(shape)) + bias.view(shape)
