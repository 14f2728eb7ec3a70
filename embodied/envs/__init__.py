"""Environments behind the gymnasium API, registered by name (``env=<name>`` on the command line).

A new env plugs in with a config dataclass and a class taking it, registered here or from user code:

    ENVS.register("my_env", config=MyEnvConfig)(MyEnv)

and a YAML file ``configs/env/my_env.yaml`` whose ``name`` field is ``my_env``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from embodied.envs.franka.config import FrankaConfig
from embodied.registry import Registry

ENVS: Registry[Callable[[Any], Any]] = Registry("env")


def _franka(config: FrankaConfig):
    from embodied.envs.franka.env import FrankaEnv

    return FrankaEnv(config)


ENVS.register("franka", config=FrankaConfig)(_franka)


def env_config(cfg: Any):
    """Validates an env config (dict, DictConfig or dataclass) against its env's schema; returns the dataclass."""
    return ENVS.config_from(cfg)


def make_env(cfg: Any):
    """Builds one env from its config (see :func:`env_config`)."""
    config = env_config(cfg)
    return ENVS.get(config.name)(config)


def make_vector_env(
    cfg: Any,
    num_envs: int,
    context: str = "forkserver",
    wrapper: Callable[[Any], Any] | None = None,
    autoreset: bool = True,
):
    """``num_envs`` copies of an env in subprocesses (``gymnasium.vector.AsyncVectorEnv``).

    ``fork`` hangs once an OpenGL context exists in the parent, so workers start with forkserver (or spawn).
    ``wrapper`` (picklable) wraps each env in its worker; ``autoreset=False`` leaves resets to the caller
    (``reset(options={"reset_mask": ...})``), so each env can start its next episode with a chosen seed.
    """
    import gymnasium as gym

    config = env_config(cfg)
    mode = gym.vector.AutoresetMode.NEXT_STEP if autoreset else gym.vector.AutoresetMode.DISABLED
    return gym.vector.AsyncVectorEnv(
        [_EnvFactory(config, wrapper) for _ in range(num_envs)],
        context=context,
        shared_memory=False,
        autoreset_mode=mode,
    )


class _EnvFactory:
    """A picklable zero-argument env constructor for vector-env workers; the worker it runs in exits when the
    process that built the vector env does (a killed evaluation leaves no ~1 GB simulator processes behind)."""

    def __init__(self, config, wrapper=None):
        import os

        self.config = config
        self.wrapper = wrapper
        self.owner_pid = os.getpid()

    def __call__(self):
        from embodied.processes import die_with_parent

        die_with_parent(self.owner_pid)
        env = make_env(self.config)
        return self.wrapper(env) if self.wrapper is not None else env


__all__ = ["ENVS", "env_config", "make_env", "make_vector_env"]
