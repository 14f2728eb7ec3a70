"""Policies behind one interface (:class:`Policy`), registered by name (``policy=<name>`` on the command line).

A new policy plugs in with a config dataclass extending :class:`PolicyConfig` (with a ``tiny()`` preset for the
contract tests), a class taking ``(config, features, stats, checkpoint_dir=None)``, and a YAML file
``configs/policy/<name>.yaml`` (``defaults: [<name>_schema@policy]`` plus what differs); from your own package,
without editing this one (see :func:`embodied.registry.load_plugins`):

    POLICIES.register("my_policy", config=MyPolicyConfig)(MyPolicy)
"""

from __future__ import annotations

from embodied.policies.base import Policy
from embodied.policies.bc import BCConfig, BCPolicy
from embodied.policies.config import PolicyConfig
from embodied.policies.diffusion import DiffusionConfig, DiffusionPolicy
from embodied.policies.openvla import VLAConfig, VLAPolicy
from embodied.policies.planner import PlannerConfig, PlannerPolicy
from embodied.registry import Registry

POLICIES: Registry[type[Policy]] = Registry("policy")
POLICIES.register("bc", config=BCConfig)(BCPolicy)
POLICIES.register("diffusion", config=DiffusionConfig)(DiffusionPolicy)
POLICIES.register("openvla", config=VLAConfig)(VLAPolicy)
POLICIES.register("planner", config=PlannerConfig)(PlannerPolicy)


def make_policy(cfg, features, stats) -> Policy:
    """A fresh policy for a dataset's features and statistics (``cfg``: dict, DictConfig or dataclass)."""
    config = POLICIES.config_from(cfg)
    return POLICIES.get(config.name)(config, features, stats)


def load_policy(directory, device="cpu") -> Policy:
    """A policy from its checkpoint directory (see :mod:`embodied.policies.checkpoint`)."""
    from embodied.policies.checkpoint import load_policy as load

    return load(directory, device)


__all__ = [
    "POLICIES",
    "BCConfig",
    "BCPolicy",
    "DiffusionConfig",
    "DiffusionPolicy",
    "PlannerConfig",
    "PlannerPolicy",
    "Policy",
    "PolicyConfig",
    "VLAConfig",
    "VLAPolicy",
    "load_policy",
    "make_policy",
]
