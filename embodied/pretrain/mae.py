"""``objective=mae``: masked autoencoding (He et al.). ViTMAE reconstructs the pixels of 75% hidden patches; the
encoder shares its weights with ViTMAE's ``vit`` and keeps them afterwards (needs ``encoder=mae``)."""

from __future__ import annotations

import copy

import numpy as np
import torch

from embodied.pretrain.frames import FrameSampler
from embodied.pretrain.objective import Objective


class MAEObjective(Objective):
    """Masked autoencoding (He et al.): ViTMAE reconstructs the pixels of ``mask_ratio`` hidden patches."""

    encoder_name = "mae"
    tiny_args = {"mask_ratio": 0.75}

    def __init__(self, encoder, mask_ratio: float = 0.75):
        super().__init__(encoder)
        from transformers import ViTMAEForPreTraining

        if encoder.config.name != "mae":
            raise ValueError(f"objective=mae trains a ViTMAE encoder (encoder=mae), got encoder={encoder.config.name}")
        config = copy.deepcopy(encoder.backbone.config)
        config.mask_ratio = mask_ratio
        self.model = ViTMAEForPreTraining(config)
        self.model.vit = encoder.backbone  # shared: what MAE learns is the encoder's
        self._mask_ratio = mask_ratio

    def sample(self, frames: FrameSampler, rng: np.random.Generator, batch_size: int) -> dict:
        """Single frames."""
        return {"images": torch.from_numpy(frames.frames(rng, batch_size))}

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """ViTMAE's pixel reconstruction loss on the masked patches."""
        pixels = self.encoder.preprocess(batch["images"].to(self.device))
        config = self.encoder.backbone.config
        config.mask_ratio, saved = self._mask_ratio, config.mask_ratio
        try:
            loss = self.model(
                pixel_values=pixels, interpolate_pos_encoding=self.encoder.input_size != config.image_size
            ).loss
        finally:
            config.mask_ratio = saved  # as an encoder it sees every patch
        return loss, {"reconstruction": loss.item()}
