"""Meta-World's own scripted policies (``metaworld.policies``) as the metaworld env's experts, with optional noise.

Each policy reads Meta-World's 39-D observation (privileged: object and goal positions) and returns a 4-D action;
Gaussian noise of std ``ExpertConfig.noise`` is added to its position command (not to the gripper), so
demonstrations cover small deviations. ``ExpertConfig.gain`` does not apply: the policies have their own gains.

With a hidden preference (``env.preference=avoid_zone``), ``ExpertConfig.style`` below +1 first takes the hand on a
detour part of the way towards the zone (at a nuisance height), then hands over to Meta-World's policy.
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
        self._via = None

    def reset(self, seed: int | None = None) -> None:
        """Call after env.reset: reseeds the noise and plans the detour of a hidden preference's style."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self._via, self._via_steps = None, 0
        preference = getattr(self.env.config, "preference", None)
        if preference:
            from embodied.envs.metaworld.env import PREFERENCES

            hand = self.env.raw_observation[:3]
            objects = self.env.raw_observation[4:7]
            via_xy = PREFERENCES[preference].via_point(hand, objects, self.config.style)
            if via_xy is not None:
                self._via = np.array([*via_xy, hand[2] + self.rng.uniform(0.0, 0.1)])

    def act(self, obs=None) -> np.ndarray:
        """The next 4-D action; ``obs`` is unused: the policy reads Meta-World's own observation."""
        if self._via is not None:  # the detour first: a proportional move to the via point, gripper open
            error = self._via - self.env.raw_observation[:3]
            self._via_steps += 1
            if np.linalg.norm(error) > 0.02 and self._via_steps <= 60:
                action = np.concatenate([10.0 * error + self.rng.normal(0.0, self.config.noise, 3), [-1.0]])
                return np.clip(action, -1.0, 1.0).astype(np.float32)
            self._via = None
        with warnings.catch_warnings():  # its policies warn whenever a gain saturates the clip: by design
            warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high")
            action = np.asarray(self.policy.get_action(self.env.raw_observation), dtype=np.float64)
        action[:3] += self.rng.normal(0.0, self.config.noise, 3)
        return np.clip(action, -1.0, 1.0).astype(np.float32)


def make_expert(env, config: ExpertConfig | None = None) -> MetaWorldExpert:
    """The scripted expert for a metaworld env's task."""
    return MetaWorldExpert(env, config)
