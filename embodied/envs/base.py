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
(``task``, when it has several) and its control rate (``control_freq``, for videos).

Seeds: collection episode ``k`` uses ``seed + k`` (below :data:`EVAL_SEED_OFFSET`); evaluation episode ``k`` uses
``EVAL_SEED_OFFSET + seed + k``, so evaluation scenes never appear in training data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from embodied.features import Feature

EVAL_SEED_OFFSET = 1_000_000_000  # evaluation seeds start here; collection seeds stay below


@dataclass
class EnvConfig:
    """Fields every env config has; each env's config dataclass extends it."""

    name: str = ""  # registry name; selects the env class

    def adapt_to(self, cameras: list[str], image_size: int | None) -> EnvConfig:
        """This config, rendering only ``cameras`` at ``image_size`` px (none: no rendering at all), for a policy
        that reads those images. Envs without cameras return themselves."""
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
