"""Hidden preferences shared by env families: a per-step cost the simulated person minimises beyond task success.

An env whose task (franka ``lift_zone``) or config (metaworld ``preference=avoid_zone``) names a preference reports
its per-step cost as the ``preference_cost`` feature (kind ``reward``; recorded in stores, never a policy input),
and its scripted expert's ``style`` knob (:class:`~embodied.envs.ExpertConfig`, +1 preferred .. -1 least liked)
grades how much of it an episode incurs. See :mod:`embodied.rewards.person` for who reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Zone:
    """A region of the table the arm should keep away from: the cost is 1 with the end effector over ``center``
    (world xy, m) and falls linearly to 0 at horizontal distance ``falloff``."""

    center: tuple[float, float]
    falloff: float

    def cost(self, eef_pos) -> float:
        """The preference cost of one step (0..1) from the end-effector position (world frame, m)."""
        distance = float(np.linalg.norm(np.asarray(eef_pos, dtype=np.float64)[:2] - np.asarray(self.center)))
        return float(np.clip(1.0 - distance / self.falloff, 0.0, 1.0))

    def via_point(self, start, target, style: float) -> np.ndarray | None:
        """Where a detour of ``style`` passes (xy): part of the way from the midpoint of ``start`` -> ``target``
        towards the zone's centre ((1 - style) / 2 of it); None at style +1 (no detour)."""
        depth = (1.0 - float(np.clip(style, -1.0, 1.0))) / 2
        if depth < 0.05:
            return None
        midpoint = (np.asarray(start, dtype=np.float64)[:2] + np.asarray(target, dtype=np.float64)[:2]) / 2
        return midpoint + depth * (np.asarray(self.center) - midpoint)
