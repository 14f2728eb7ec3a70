"""The fields every policy config has (no torch here: configs are composed before any model is built)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from embodied.configs.checks import at_least


@dataclass
class PolicyConfig:
    """Fields every policy has; each policy's config dataclass extends it.

    Horizons follow Chi et al.: a policy sees ``n_obs_steps`` observations ending now, predicts ``horizon`` actions
    starting at the first observed step, and ``n_action_steps`` of them (from the current step on) are executed
    before it is asked again.
    """

    name: str = ""  # registry name; selects the policy class
    n_obs_steps: int = 1  # observations the policy sees, ending at the current step
    horizon: int = 8  # actions predicted per call, starting at the first observed step
    n_action_steps: int = 8  # actions executed per call, from the current step on
    # observation keys; null: every camera + proprio when the data has images, else proprio + state
    obs_keys: list[str] | None = None
    # normalisation per feature kind: mean_std | min_max | identity
    normalization: dict[str, str] = field(
        default_factory=lambda: {"proprio": "mean_std", "state": "mean_std", "action": "min_max"}
    )

    CHECKS: ClassVar = {"n_obs_steps": at_least(1), "horizon": at_least(1), "n_action_steps": at_least(1)}

    @classmethod
    def tiny(cls) -> PolicyConfig:
        """A CPU-sized instance for contract tests (every registered policy's config provides one)."""
        raise NotImplementedError(f"{cls.__name__} has no tiny() preset for the contract tests")
