"""OpenVLA's action tokenizer: continuous actions <-> ids among the last 256 of a language model's vocabulary.

Each action dimension is normalised to [-1, 1] from the dataset's 1st and 99th percentiles (``q01``, ``q99``;
OpenVLA's ``BOUNDS_Q99``) and clipped; dimensions the mask excludes (by default the last one, the gripper,
already in [-1, 1]) are only clipped. The result is discretised against 256 uniform edges
(``linspace(-1, 1, 256)``, numpy's ``digitize`` convention: bin index 1..256) and bin index ``b`` becomes token id
``vocab_size - b``, so actions live in ids ``[vocab_size - 256, vocab_size - 1]``: the least used entries of a
BPE vocabulary, as OpenVLA does. Decoding maps an id back to its bin's centre (255 centres; index 256, reached
only by exactly 1.0, shares the last) and un-normalises, so inside [q01, q99] the round-trip error is at most half
a bin width (``(q99 - q01) / 255`` per dimension).

The statistics travel with checkpoints as ``to_dict()`` (one entry per dataset in a mixture, like OpenVLA's
``dataset_statistics.json``), so inference un-normalises with the right dataset's bounds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch


class ActionTokenizer:
    """Args:
    vocab_size: the language model's vocabulary size (ids ``vocab_size - n_bins`` .. ``vocab_size - 1``).
    q01, q99: per-dimension normalisation bounds.
    mask: per dimension, whether to normalise it (False: keep it raw, only clipped to [-1, 1]).
    n_bins: number of bin edges (256, as OpenVLA).
    """

    def __init__(
        self,
        vocab_size: int,
        q01: Sequence[float],
        q99: Sequence[float],
        mask: Sequence[bool] | None = None,
        n_bins: int = 256,
    ):
        q01, q99 = np.asarray(q01, dtype=np.float64), np.asarray(q99, dtype=np.float64)
        if q01.shape != q99.shape or q01.ndim != 1:
            raise ValueError(f"q01 and q99 must be 1-D and the same length, got {q01.shape} and {q99.shape}")
        if np.any(q99 < q01):
            raise ValueError(f"q99 must be >= q01 in every dimension, got q01={q01.tolist()} q99={q99.tolist()}")
        if vocab_size <= n_bins:
            raise ValueError(f"the vocabulary ({vocab_size}) must be larger than the {n_bins} action bins")
        self.vocab_size, self.n_bins = int(vocab_size), int(n_bins)
        self.q01, self.q99 = q01, q99
        self.mask = np.ones(len(q01), bool) if mask is None else np.asarray(mask, dtype=bool)
        if self.mask.shape != q01.shape:
            raise ValueError(f"mask needs one entry per action dimension ({len(q01)}), got {self.mask.shape}")
        self.edges = np.linspace(-1.0, 1.0, n_bins)
        self.centers = (self.edges[:-1] + self.edges[1:]) / 2

    @classmethod
    def from_stats(cls, vocab_size: int, action_stats: Mapping, mask: Sequence[bool] | None = None, **kwargs):
        """From an episode store's ``stats["action"]``; default mask: every dimension but the last (gripper)."""
        q01, q99 = action_stats["q01"], action_stats["q99"]
        if mask is None:
            mask = [True] * (len(q01) - 1) + [False]
        return cls(vocab_size, q01, q99, mask, **kwargs)

    @property
    def action_dim(self) -> int:
        """Dimensions of one action."""
        return len(self.q01)

    @property
    def first_id(self) -> int:
        """The smallest action id; action ids are ``first_id .. vocab_size - 1``."""
        return self.vocab_size - self.n_bins

    # ------------------------------------------------------------------ normalisation
    def normalize(self, actions):
        """Raw actions (..., A) -> [-1, 1] (masked-out dimensions only clipped)."""
        x, back = _as_tensor(actions)
        q01, q99, mask = self._bounds(x)
        scaled = 2 * (x - q01) / (q99 - q01 + 1e-8) - 1
        return back(torch.where(mask, scaled, x).clamp(-1.0, 1.0))

    def unnormalize(self, normalized):
        """[-1, 1] normalised actions -> raw actions (the gripper passes through, clipped)."""
        x, back = _as_tensor(normalized)
        q01, q99, mask = self._bounds(x)
        return back(torch.where(mask, (x + 1) / 2 * (q99 - q01) + q01, x))

    # ------------------------------------------------------------------ tokens
    def encode(self, actions):
        """Raw actions (..., A) -> token ids (..., A), int64, each in ``[first_id, vocab_size - 1]``."""
        x, back = _as_tensor(actions)
        self._check_dim(x)
        normalized, _ = _as_tensor(self.normalize(x))
        edges = torch.as_tensor(self.edges, dtype=normalized.dtype, device=normalized.device)
        bins = torch.bucketize(normalized.contiguous(), edges, right=True)  # np.digitize: 1..n_bins
        return back(self.vocab_size - bins, integer=True)

    def decode(self, token_ids):
        """Token ids (..., A) -> raw actions (..., A) at bin centres. Ids outside the action range are refused."""
        ids, back = _as_tensor(token_ids, integer=True)
        self._check_dim(ids)
        if ids.numel() and (ids.min() < self.first_id or ids.max() >= self.vocab_size):
            raise ValueError(
                f"action token ids must be in [{self.first_id}, {self.vocab_size - 1}], got "
                f"{int(ids.min())}..{int(ids.max())}"
            )
        index = (self.vocab_size - ids - 1).clamp(0, len(self.centers) - 1)
        centers = torch.as_tensor(self.centers, dtype=torch.float64, device=ids.device)
        return back(self.unnormalize(centers[index]))

    def bin_width(self) -> np.ndarray:
        """Per dimension, the width of one bin in raw units (normalised dims: (q99 - q01) / 255)."""
        width = 2.0 / (self.n_bins - 1)
        return np.where(self.mask, width / 2 * (self.q99 - self.q01), width)

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        """JSON-ready form, saved in ``dataset_statistics.json``."""
        return {"q01": self.q01.tolist(), "q99": self.q99.tolist(), "mask": self.mask.tolist(), "n_bins": self.n_bins}

    @classmethod
    def from_dict(cls, vocab_size: int, saved: Mapping) -> ActionTokenizer:
        """Inverse of :meth:`to_dict`."""
        return cls(vocab_size, saved["q01"], saved["q99"], saved["mask"], saved.get("n_bins", 256))

    # ------------------------------------------------------------------ helpers
    def _bounds(self, x: torch.Tensor):
        self._check_dim(x)
        q01 = torch.as_tensor(self.q01, dtype=x.dtype, device=x.device)
        q99 = torch.as_tensor(self.q99, dtype=x.dtype, device=x.device)
        return q01, q99, torch.as_tensor(self.mask, device=x.device)

    def _check_dim(self, x: torch.Tensor) -> None:
        if x.ndim == 0 or x.shape[-1] != self.action_dim:
            raise ValueError(f"expected (..., {self.action_dim}) actions or ids, got shape {tuple(x.shape)}")


def _as_tensor(value, integer: bool = False):
    """(float64 or int64 tensor, back): ``back(result)`` returns a float result in the caller's kind (numpy in,
    numpy out; a float input keeps its dtype, an integer input gets float32 tensors / float64 arrays) and
    ``back(result, integer=True)`` an int64 one."""
    if torch.is_tensor(value):
        float_dtype = value.dtype if value.is_floating_point() else torch.float32
        tensor = value.long() if integer else value.double()

        def back(out, integer=False):
            return out.long() if integer else out.to(float_dtype)

        return tensor, back
    array = np.asarray(value)
    float_dtype = array.dtype if array.dtype.kind == "f" else np.float64
    tensor = torch.as_tensor(array, dtype=torch.int64 if integer else torch.float64)

    def back(out, integer=False):
        return out.cpu().numpy().astype(np.int64 if integer else float_dtype)

    return tensor, back
