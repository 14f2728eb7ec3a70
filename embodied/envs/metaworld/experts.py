"""Meta-World's own scripted policies (``metaworld.policies``) as the metaworld env's experts, with optional noise.

Each policy reads Meta-World's 39-D observation (privileged: object and goal positions) and returns a 4-D action;
Gaussian noise of std ``ExpertConfig.noise`` is added to its position command (not to the gripper), so
demonstrations cover small deviations. ``ExpertConfig.gain`` does not apply: the policies have their own gains.
"""

from __future__ import annotations

import warnings

import numpy as np

from embodied.envs import ExpertConfig


class MetaWorldExpert:
    """Meta-World's scripted policy for the env's task."""

    def __init__(self, env, config: ExpertConfig | None = None):
        from metaworld.policies import ENV_POLICY_MAP

        self.env = env
        self.config = config or ExpertConfig()
        self.policy = ENV_POLICY_MAP[env.config.task]()
        self.rng = np.random.default_rng(self.config.seed)

    def reset(self, seed: int | None = None) -> None:
        """Call after env.reset (the policies keep no state; this reseeds the noise)."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)

    def act(self, obs=None) -> np.ndarray:
        """The next 4-D action; ``obs`` is unused: the policy reads Meta-World's own observation."""
        with warnings.catch_warnings():  # its policies warn whenever a gain saturates the clip: by design
            warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high")
            action = np.asarray(self.policy.get_action(self.env.raw_observation), dtype=np.float64)
        action[:3] += self.rng.normal(0.0, self.config.noise, 3)
        return np.clip(action, -1.0, 1.0).astype(np.float32)


def make_expert(env, config: ExpertConfig | None = None) -> MetaWorldExpert:
    """The scripted expert for a metaworld env's task."""
    return MetaWorldExpert(env, config)
