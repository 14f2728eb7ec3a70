"""Environments behind the gymnasium API (:mod:`embodied.envs.base`), registered by name (``env=<name>``), and
their scripted experts.

A new env plugs in with a config dataclass and a class taking it, registered here or from user code:

    ENVS.register("my_env", config=MyEnvConfig)(MyEnv)
    EXPERTS.register("my_env")(make_my_expert)   # (env, ExpertConfig) -> an object with reset() and act(obs)

and a YAML file ``configs/env/my_env.yaml`` (``defaults: [my_env_schema]`` plus what differs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from embodied.envs.base import EVAL_SEED_OFFSET, Env, EnvConfig
from embodied.envs.franka.config import FrankaConfig, ShiftedFrankaConfig
from embodied.envs.metaworld.config import MetaWorldConfig, ShiftedMetaWorldConfig
from embodied.registry import Registry

ENVS: Registry[Callable[[Any], Any]] = Registry("env")
# Scripted experts by env name: ``factory(env, ExpertConfig)`` -> expert with ``reset()`` and ``act(obs)``; experts
# may read the env's privileged simulator state, so they run inside the env's process.
EXPERTS: Registry[Callable[[Any, Any], Any]] = Registry("expert")


@dataclass
class ExpertConfig:
    """How a scripted expert acts."""

    noise: float = 0.1  # std of Gaussian noise on position/rotation commands, in action units
    gain: float = 0.7  # proportional gain on the position error (1.0 would close it in one step)
    seed: int = 0  # seeds the noise (collection: the episode's seed)
    # tasks with a hidden preference (franka lift_zone): +1 the behaviour the person prefers, -1 the one they like
    # least, graded between; experts of other tasks ignore it
    style: float = 1.0


def _franka(config: FrankaConfig):
    from embodied.envs.franka.env import FrankaEnv

    return FrankaEnv(config)


def _franka_expert(env, config: ExpertConfig):
    from embodied.envs.franka.experts import make_expert

    return make_expert(env, config)


def _metaworld(config: MetaWorldConfig):
    from embodied.envs.metaworld.env import MetaWorldEnv

    return MetaWorldEnv(config)


def _metaworld_expert(env, config: ExpertConfig):
    from embodied.envs.metaworld.experts import make_expert

    return make_expert(env, config)


ENVS.register("franka", config=FrankaConfig)(_franka)
EXPERTS.register("franka")(_franka_expert)
ENVS.register("franka_shifted", config=ShiftedFrankaConfig)(_franka)  # the same env in another visual domain
EXPERTS.register("franka_shifted")(_franka_expert)
ENVS.register("metaworld", config=MetaWorldConfig)(_metaworld)
EXPERTS.register("metaworld")(_metaworld_expert)
ENVS.register("metaworld_shifted", config=ShiftedMetaWorldConfig)(_metaworld)  # Meta-World in another look
EXPERTS.register("metaworld_shifted")(_metaworld_expert)


def env_config(cfg: Any):
    """Validates an env config (dict, DictConfig or dataclass) against its env's schema; returns the dataclass."""
    return ENVS.config_from(cfg)


def make_env(cfg: Any):
    """Builds one env from its config (see :func:`env_config`)."""
    config = env_config(cfg)
    return ENVS.get(config.name)(config)


def make_expert(env, config: ExpertConfig | None = None):
    """The registered scripted expert of ``env`` (by its config's name), for the env's current task."""
    return EXPERTS.get(env.config.name)(env, config or ExpertConfig())


def make_vector_env(
    cfg: Any,
    num_envs: int,
    context: str = "forkserver",
    wrappers: Sequence[Callable[[Any], Any]] = (),
    autoreset: bool = True,
    in_process: bool = False,
):
    """``num_envs`` copies of an env in subprocesses (``gymnasium.vector.AsyncVectorEnv``), or in this process
    (``in_process``: ``SyncVectorEnv``, for debugging and single-env runs).

    ``fork`` hangs once an OpenGL context exists in the parent, so workers start with forkserver (or spawn); each
    worker exits with this process (:func:`embodied.processes.die_with_parent`). ``wrappers`` (picklable) wrap
    each env in its worker, innermost first; ``autoreset=False`` leaves resets to the caller
    (``reset(options={"reset_mask": ...})``), so each env can start its next episode with a chosen seed.
    """
    import gymnasium as gym

    config = env_config(cfg)
    mode = gym.vector.AutoresetMode.NEXT_STEP if autoreset else gym.vector.AutoresetMode.DISABLED
    factories = [_EnvFactory(config, tuple(wrappers), watch=not in_process) for _ in range(num_envs)]
    if in_process:
        return gym.vector.SyncVectorEnv(factories, autoreset_mode=mode)
    return gym.vector.AsyncVectorEnv(factories, context=context, shared_memory=False, autoreset_mode=mode)


class _EnvFactory:
    """A picklable zero-argument env constructor for vector-env workers; the worker it runs in exits when the
    process that built the vector env does (a killed command leaves no ~1 GB simulator processes behind)."""

    def __init__(self, config, wrappers: tuple = (), watch: bool = True):
        import os

        self.config = config
        self.wrappers = wrappers
        self.owner_pid = os.getpid() if watch else None

    def __call__(self):
        if self.owner_pid is not None:
            from embodied.processes import die_with_parent

            die_with_parent(self.owner_pid)
        env = make_env(self.config)
        for wrapper in self.wrappers:
            env = wrapper(env)
        return env


__all__ = [
    "ENVS",
    "EVAL_SEED_OFFSET",
    "EXPERTS",
    "Env",
    "EnvConfig",
    "ExpertConfig",
    "env_config",
    "make_env",
    "make_expert",
    "make_vector_env",
]
