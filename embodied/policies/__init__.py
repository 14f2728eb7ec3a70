"""Policies behind one interface (:class:`Policy`), registered by name (``policy=<name>`` on the command line).

A new policy plugs in with a config dataclass extending :class:`PolicyConfig`, a class taking
``(config, features, stats, encoder_configs=None)``, and a YAML file ``configs/policy/<name>.yaml``:

    POLICIES.register("my_policy", config=MyPolicyConfig)(MyPolicy)
"""

from __future__ import annotations

from embodied.policies.base import Policy, PolicyConfig
from embodied.policies.bc import BCConfig, BCPolicy
from embodied.policies.diffusion import DiffusionConfig, DiffusionPolicy
from embodied.policies.vla import VLAConfig, VLAPolicy
from embodied.registry import Registry

POLICIES: Registry[type[Policy]] = Registry("policy")
POLICIES.register("bc", config=BCConfig)(BCPolicy)
POLICIES.register("diffusion", config=DiffusionConfig)(DiffusionPolicy)
POLICIES.register("openvla", config=VLAConfig)(VLAPolicy)


def make_policy(cfg, features, stats) -> Policy:
    """A fresh policy for a dataset's features and statistics (``cfg``: dict, DictConfig or dataclass)."""
    config = POLICIES.config_from(cfg)
    return POLICIES.get(config.name)(config, features, stats)


__all__ = [
    "POLICIES",
    "BCConfig",
    "BCPolicy",
    "DiffusionConfig",
    "DiffusionPolicy",
    "Policy",
    "PolicyConfig",
    "VLAConfig",
    "VLAPolicy",
    "make_policy",
]
