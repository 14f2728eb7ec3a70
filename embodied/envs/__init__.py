"""Environments behind the gymnasium API, registered by name (``env=<name>`` on the command line).

A new env plugs in with a config dataclass and a class taking it, registered here or from user code:

    ENVS.register("my_env", config=MyEnvConfig)(MyEnv)

and a YAML file ``configs/env/my_env.yaml`` whose ``name`` field is ``my_env``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import is_dataclass
from typing import Any

from embodied.envs.franka.config import FrankaConfig
from embodied.registry import Registry

ENVS: Registry[Callable[[Any], Any]] = Registry("env")


def _franka(config: FrankaConfig):
    from embodied.envs.franka.env import FrankaEnv

    return FrankaEnv(config)


ENVS.register("franka", config=FrankaConfig)(_franka)


def env_config(cfg: Any):
    """Validates a config (dict, DictConfig or dataclass) against its env's schema and returns the dataclass.

    An unknown key or a wrong type raises with the key's name (OmegaConf's structured-config check).
    """
    if is_dataclass(cfg):
        return cfg
    from omegaconf import OmegaConf

    name = cfg["name"] if "name" in cfg else None
    if name is None:
        raise ValueError("env config needs a 'name' field naming a registered env: " + ", ".join(ENVS.names()))
    schema = ENVS.config_class(name)
    if schema is None:
        return cfg
    merged = OmegaConf.merge(OmegaConf.structured(schema), cfg)
    return OmegaConf.to_object(merged)


def make_env(cfg: Any):
    """Builds one env from its config (see :func:`env_config`)."""
    config = env_config(cfg)
    return ENVS.get(config.name)(config)


def make_vector_env(cfg: Any, num_envs: int, context: str = "forkserver"):
    """``num_envs`` copies of an env in subprocesses (``gymnasium.vector.AsyncVectorEnv``).

    ``fork`` hangs once an OpenGL context exists in the parent, so workers start with forkserver (or spawn).
    """
    import gymnasium as gym

    config = env_config(cfg)
    return gym.vector.AsyncVectorEnv(
        [_EnvFactory(config) for _ in range(num_envs)], context=context, shared_memory=False
    )


class _EnvFactory:
    """A picklable zero-argument env constructor for vector-env workers."""

    def __init__(self, config):
        self.config = config

    def __call__(self):
        return make_env(self.config)


__all__ = ["ENVS", "env_config", "make_env", "make_vector_env"]
