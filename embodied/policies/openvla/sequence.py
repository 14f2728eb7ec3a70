"""The VLA's input sequence: ``[BOS, image tokens, (proprio token), prompt]`` then, for sequential decoding, the
action ids and EOS (training) or, for parallel decoding (OpenVLA-OFT), empty action slots; left-padded so every
sample's action part ends at the last position."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

# what each position of an input sequence holds (``VLAInputs.kinds``)
PAD, BOS, IMAGE, PROPRIO, TEXT, ACTION, EOS, SLOT = range(8)


@dataclass
class VLAInputs:
    """One left-padded batch of sequences."""

    inputs_embeds: torch.Tensor  # (B, L, H)
    attention_mask: torch.Tensor  # (B, L) 1/0, or (B, 1, L, L) additive float (parallel decoding)
    position_ids: torch.Tensor  # (B, L), counting valid positions only
    kinds: torch.Tensor  # (B, L): PAD, BOS, IMAGE, PROPRIO, TEXT, ACTION, EOS, SLOT
    input_ids: torch.Tensor  # (B, L), 0 where a position holds no token
    labels: torch.Tensor  # (B, L): the target id at action and EOS positions, -100 elsewhere


def assemble(
    embed,
    vision: torch.Tensor,
    proprio: torch.Tensor | None,
    prompts: Sequence[list[int]],
    bos: int | None,
    eos: int,
    action_ids: torch.Tensor | None = None,
    slots: torch.Tensor | None = None,
) -> VLAInputs:
    """The batch of sequences.

    Args:
        embed: the LM's input embedding layer.
        vision: projected image tokens (B, N, H); proprio: the projected proprio token (B, 1, H) or None.
        prompts: each sample's prompt ids (without BOS).
        action_ids: (B, n) target ids to append with EOS (sequential decoding, training), or None.
        slots: (n_slots, H) learned action-slot embeddings appended after the prompt (parallel decoding), or None.
    """
    batch, n_image = vision.shape[:2]
    n_slots = 0 if slots is None else slots.shape[0]
    rows_ids, rows_kinds = [], []
    for b in range(batch):
        ids = ([bos] if bos is not None else []) + [0] * n_image + ([0] if proprio is not None else [])
        kinds = ([BOS] if bos is not None else []) + [IMAGE] * n_image + ([PROPRIO] if proprio is not None else [])
        ids += prompts[b]
        kinds += [TEXT] * len(prompts[b])
        if slots is not None:
            ids += [0] * n_slots
            kinds += [SLOT] * n_slots
        elif action_ids is not None:
            ids += action_ids[b].tolist() + [eos]
            kinds += [ACTION] * action_ids.shape[1] + [EOS]
        rows_ids.append(ids)
        rows_kinds.append(kinds)
    length = max(len(r) for r in rows_ids)
    device = vision.device
    input_ids = torch.zeros(batch, length, dtype=torch.long)
    kinds = torch.full((batch, length), PAD, dtype=torch.long)
    for b, (ids, row_kinds) in enumerate(zip(rows_ids, rows_kinds)):
        input_ids[b, length - len(ids) :] = torch.tensor(ids)
        kinds[b, length - len(ids) :] = torch.tensor(row_kinds)
    input_ids, kinds = input_ids.to(device), kinds.to(device)
    embeds = embed(input_ids).to(vision.dtype)
    embeds = embeds.masked_scatter((kinds == IMAGE).unsqueeze(-1), vision)
    if proprio is not None:
        embeds = embeds.masked_scatter((kinds == PROPRIO).unsqueeze(-1), proprio)
    if slots is not None:
        embeds = embeds.masked_scatter((kinds == SLOT).unsqueeze(-1), slots.to(embeds.dtype).expand(batch, -1, -1))
    valid = kinds != PAD
    position_ids = (valid.long().cumsum(-1) - 1).clamp(min=0)
    labels = torch.where((kinds == ACTION) | (kinds == EOS), input_ids, torch.full_like(input_ids, -100))
    mask = slot_attention_mask(kinds, embeds.dtype) if slots is not None else valid.long()
    return VLAInputs(embeds, mask, position_ids, kinds, input_ids, labels)


def slot_attention_mask(kinds: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A (B, 1, L, L) additive mask: causal over the prompt, padding never attended, and the action slots seeing
    the whole prompt and each other in both directions (parallel decoding)."""
    length = kinds.shape[1]
    valid = kinds != PAD
    causal = torch.ones(length, length, dtype=torch.bool, device=kinds.device).tril()
    slots = kinds == SLOT
    allowed = (causal.unsqueeze(0) | (slots.unsqueeze(2) & slots.unsqueeze(1))) & valid.unsqueeze(1)
    allowed |= torch.eye(length, dtype=torch.bool, device=kinds.device).unsqueeze(0)  # padded rows: no NaNs
    mask = torch.zeros(allowed.shape, dtype=dtype, device=kinds.device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min).unsqueeze(1)
