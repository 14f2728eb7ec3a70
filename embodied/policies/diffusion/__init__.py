"""``policy=diffusion`` (and the ``diffusion_small`` preset): Diffusion Policy."""

from embodied.policies.diffusion.config import DiffusionConfig, TransformerDenoiserConfig
from embodied.policies.diffusion.policy import DiffusionPolicy

__all__ = ["DiffusionConfig", "DiffusionPolicy", "TransformerDenoiserConfig"]
