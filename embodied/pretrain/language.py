"""Language-supervised encoder pretraining across visual domains (Lang4Sim2Real, Yu et al., RSS 2024).

Frames of two (or more) visually different domains whose stage captions match should land close together: language
is what the domains share. Every frame's caption (``language_caption``, written by the scripted experts) is embedded
once by a pretrained sentence encoder (:mod:`embodied.encoders.text`); batches hold equal shares of every domain in
the stores (a store's domain: its env and look, :func:`~embodied.pretrain.frames.domain_of`).

- ``lang_reg``: a linear head maps the image features to the caption embedding; the loss is the squared L2 distance
  between the normalised prediction and the normalised caption vector, averaged per domain and summed over domains
  (the paper's).
- ``lang_dist``: for pairs of frames from two different domains (any two frames when the stores hold one domain), the
  cosine similarity of their projected image features, scaled by 40, regresses the cosine similarity of their
  captions' embeddings, scaled by 40, over every pair of the batch's two halves (the paper scales both by 40; its
  text similarity is a language model's, here the sentence encoder's cosine).
- ``stage_classify``: the ablation: cross-entropy over the distinct captions (stages as classes, no language
  geometry).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from embodied.features import CAPTION
from embodied.pretrain.frames import FrameSampler
from embodied.pretrain.objective import Objective

LANG_DIST_SCALE = 40.0  # the paper's scale of both similarities in lang_dist


class CaptionObjective(Objective):
    """Base class: the stores' captions embedded once (:meth:`prepare`), batches balanced over domains."""

    def __init__(self, encoder, text_encoder: dict | None = None):
        super().__init__(encoder)
        self.text_encoder_config = dict(text_encoder or {})
        self.captions: list[str] = []

    def prepare(self, frames: FrameSampler) -> None:
        """Embeds every distinct caption of the stores (called once, before training; deterministic, so a resumed
        run rebuilds the same table)."""
        from embodied.encoders.text import make_text_encoder

        captions = set()
        for store in frames.stores:
            if CAPTION not in store.features:
                raise KeyError(f"{store.path} has no {CAPTION!r} (stage captions): collect a new store with "
                               "`embodied collect` in an env whose experts caption their stages (franka, "
                               "franka_shifted)")  # fmt: skip
            captions.update(store.vocabulary(CAPTION))
        self.captions = sorted(captions)
        vectors = make_text_encoder(self.text_encoder_config).encode(self.captions)
        self.register_buffer("caption_vectors", F.normalize(vectors, dim=-1).to(self.device), persistent=False)
        self.n_domains = len(frames.domains)

    def sample(self, frames: FrameSampler, rng: np.random.Generator, batch_size: int) -> dict:
        """Frames with equal shares of every domain, their caption indices and domains."""
        return domain_batch(self, frames, rng, rng.permutation(np.arange(batch_size) % len(frames.domains)))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled encoder features of uint8 frames."""
        return self.encoder(images.to(self.device)).pooled


class LangRegObjective(CaptionObjective):
    """``lang_reg``: regress the normalised caption embedding from each domain's images (see the module docstring)."""

    def __init__(self, encoder, text_encoder: dict | None = None):
        super().__init__(encoder, text_encoder)
        self.head = None

    def prepare(self, frames: FrameSampler) -> None:
        """The caption table, then the head to its width."""
        super().prepare(frames)
        self.head = nn.Linear(self.encoder.pooled_dim, self.caption_vectors.shape[1]).to(self.device)

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """Per domain, the mean squared distance of normalised prediction and caption vector; summed over domains."""
        pred = F.normalize(self.head(self.features(batch["images"])), dim=-1)
        target = self.caption_vectors[batch["caption"].to(self.device)]
        distance = (pred - target).square().sum(-1)
        domain = batch["domain"].to(self.device)
        loss = sum(distance[domain == d].mean() for d in torch.unique(domain))
        return loss, {"lang_reg": loss.item(), "cosine": (pred * target).sum(-1).mean().item()}


class LangDistObjective(CaptionObjective):
    """``lang_dist``: image-feature similarity of cross-domain pairs regresses their captions' similarity."""

    tiny_args = {"projection_dim": 16}
    tiny_batch_size = 64  # each batch's loss depends on its mix of stages: small batches hide the trend

    def __init__(self, encoder, text_encoder: dict | None = None, projection_dim: int = 128):
        super().__init__(encoder, text_encoder)
        self.projection = nn.Linear(encoder.pooled_dim, projection_dim)

    def sample(self, frames: FrameSampler, rng: np.random.Generator, batch_size: int) -> dict:
        """``batch_size`` pairs, the two frames of each from two different domains when there are several."""
        n = len(frames.domains)
        first = rng.integers(0, n, batch_size)
        second = (first + rng.integers(1, n, batch_size)) % n if n > 1 else first
        a, b = domain_batch(self, frames, rng, first), domain_batch(self, frames, rng, second)  # a[i] pairs b[i]
        # one row per pair, so micro-batches split pairs whole
        return {f"{key}_{side}": part[key] for side, part in (("a", a), ("b", b)) for key in part}

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """MSE between 40 x the image cosines and 40 x the caption cosines of all (a, b) pairs of the batch."""
        z = F.normalize(self.projection(self.features(torch.cat([batch["images_a"], batch["images_b"]]))), dim=-1)
        za, zb = z.chunk(2)
        ta = self.caption_vectors[batch["caption_a"].to(self.device)]
        tb = self.caption_vectors[batch["caption_b"].to(self.device)]
        # every a-frame against every b-frame: B^2 cross-domain pairs per batch instead of B (a far less noisy loss)
        pred = LANG_DIST_SCALE * za @ zb.T
        target = LANG_DIST_SCALE * ta @ tb.T
        loss = F.mse_loss(pred, target)
        return loss, {"lang_dist": loss.item(), "mean_abs_error": (pred - target).abs().mean().item() / LANG_DIST_SCALE}


def domain_batch(objective: CaptionObjective, frames: FrameSampler, rng: np.random.Generator, domains) -> dict:
    """Frames of the given domains with their caption indices (one per entry of ``domains``)."""
    images, captions = frames.domain_frames(rng, np.asarray(domains))
    index = {c: i for i, c in enumerate(objective.captions)}
    return {"images": torch.from_numpy(images), "caption": torch.tensor([index[c] for c in captions]),
            "domain": torch.from_numpy(np.asarray(domains))}  # fmt: skip


class StageClassifyObjective(CaptionObjective):
    """``stage_classify``: the ablation: each distinct caption a class, cross-entropy, no language geometry."""

    def prepare(self, frames: FrameSampler) -> None:
        """The captions (classes), then the classifier."""
        super().prepare(frames)
        self.head = nn.Linear(self.encoder.pooled_dim, len(self.captions)).to(self.device)

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """Cross-entropy over the stages, with accuracy."""
        logits = self.head(self.features(batch["images"]))
        target = batch["caption"].to(self.device)
        loss = F.cross_entropy(logits, target)
        return loss, {"stage_ce": loss.item(), "accuracy": (logits.argmax(-1) == target).float().mean().item()}
