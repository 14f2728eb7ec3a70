"""``policy=openvla`` (and the ``openvla_small`` preset): an OpenVLA-style vision-language-action model."""

from embodied.policies.openvla.config import VLAConfig
from embodied.policies.openvla.policy import VLAPolicy

__all__ = ["VLAConfig", "VLAPolicy"]
