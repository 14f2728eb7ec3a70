"""The env contract: what rollouts, stores and policies rely on, whatever the simulator.

An env is a ``gymnasium.Env`` (subclass :class:`Env`) built from a config dataclass (subclass :class:`EnvConfig`)
and registered with ``ENVS.register(name, config=...)``. It must

- describe its per-step ``features`` (observations and the action: key, shape, dtype, kind), which stores are
  created from and policies are built for;
- return observations holding exactly those observation keys, plus ``language_instruction`` (a string);
- report ``info["is_success"]`` on every step;
- give ``metadata_for_store``: dataset-level facts (robot, control frequency, action space in words, cameras, the
  env config) an Open-X-style store records;
- accept ``reset(seed=s)`` fixing the scene, so episode ``k`` of a collection is reproducible from its seed.

Its config tells how to render only what a policy reads (:meth:`EnvConfig.adapt_to`), which task it runs
(``task``, when it has several; a multi-task suite's tasks through :meth:`EnvConfig.suite_tasks`) and its control
rate (``control_freq``, for videos).

Seeds: collection episode ``k`` uses ``seed + k`` (below :data:`EVAL_SEED_OFFSET`); evaluation episode ``k`` uses
``EVAL_SEED_OFFSET + seed + k``, so evaluation scenes never appear in training data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from embodied.features import INSTRUCTION, Feature

EVAL_SEED_OFFSET = 1_000_000_000  # evaluation seeds start here; collection seeds stay below
MAX_INSTRUCTION_LENGTH = 256  # characters of a language instruction in the observation space


@dataclass
class EnvConfig:
    """Fields every env config has; each env's config dataclass extends it."""

    name: str = ""  # registry name; selects the env class
    # envs that simulate another registered env and differ only in looks (franka_shifted: franka) name it here, so
    # stores of both may train one policy evaluated in either
    physics: ClassVar[str | None] = None

    def adapt_to(self, cameras: list[str], image_size: int | None) -> EnvConfig:
        """This config, rendering only ``cameras`` at ``image_size`` px (none: no rendering at all), for a policy
        that reads those images. Envs without cameras return themselves."""
        return self

    def suite_tasks(self) -> list[str]:
        """The tasks of the multi-task suite this config names (collection and evaluation run each in turn, via
        :meth:`for_task`); empty: the config runs one task."""
        return []

    def for_task(self, task: str) -> EnvConfig:
        """This config, running ``task`` alone (envs with suites override it)."""
        return self


class Env(gym.Env):
    """Base class of embodied envs (see the module docstring for the contract)."""

    config: EnvConfig

    @property
    def features(self) -> list[Feature]:
        """Per-step features this env produces: its observations and its action."""
        raise NotImplementedError

    @property
    def metadata_for_store(self) -> dict[str, Any]:
        """Dataset-level facts an episode store records (robot, control frequency, action space, cameras, config)."""
        raise NotImplementedError

    def observation_space_from_features(self) -> gym.spaces.Dict:
        """The gymnasium observation space of :attr:`features`: images uint8 in [0, 255], vectors float32, and the
        instruction as text."""
        import string

        spaces: dict[str, gym.Space] = {}
        for feature in self.features:
            if feature.kind == "image":
                spaces[feature.key] = gym.spaces.Box(0, 255, feature.shape, np.uint8)
            elif feature.kind in ("proprio", "state", "reward"):  # reward: e.g. a privileged preference cost
                spaces[feature.key] = gym.spaces.Box(-np.inf, np.inf, feature.shape, np.float32)
        charset = string.ascii_letters + string.digits + string.punctuation + " "
        spaces[INSTRUCTION] = gym.spaces.Text(MAX_INSTRUCTION_LENGTH, charset=charset)
        return gym.spaces.Dict(spaces)
