"""``policy=bc``: behaviour cloning."""

from embodied.policies.bc.config import BCConfig
from embodied.policies.bc.policy import BCPolicy

__all__ = ["BCConfig", "BCPolicy"]
