"""Franka tasks with a hidden preference: success alone is not what the person wants.

RAPL's setting (Tian et al.): a person watches rollouts and prefers some over others for a reason the task's success
check does not see. Here the reason is a privileged, per-step **preference cost** in [0, 1] that the env reports
as the ``preference_cost`` feature (kind ``reward``, recorded in stores; policies never read it) and that the
simulated person of :mod:`embodied.rewards.person` ranks rollouts by. Learned rewards are scored against it.

``lift_zone``: lift the cube, but keep the arm away from the blue zone marked on the table. The cost of a step is
``clip(1 - d / ZONE_FALLOFF, 0, 1)`` for the end effector's horizontal distance ``d`` to the zone's centre: 1 over
the centre, 0 from 20 cm away. The scripted expert's ``style`` knob (:class:`~embodied.envs.ExpertConfig`) grades the
behaviour: ``+1`` goes straight to the cube (cost 0), ``-1`` detours over the zone's centre, values between detour
part of the way; independent of style, the detour's height varies (a nuisance a frozen encoder may attend to
instead).
"""

from __future__ import annotations

from embodied.envs.preferences import Zone

# world xy, metres (the table's centre is the origin; the cube starts near it); the cost falls from 1 at the centre
# to 0 at 20 cm
ZONE = Zone(center=(-0.05, 0.20), falloff=0.20)
ZONE_RADIUS = 0.08  # the marked disc's radius (what the camera sees)
TABLE_TOP = 0.8  # the table's surface height in robosuite's Lift (table_offset z)

# the per-step cost of each preference by name (Task.preference), from the end-effector position
PREFERENCE_COSTS = {"avoid_zone": ZONE.cost}

_registered = False


def register_robosuite_envs() -> None:
    """Defines robosuite's ``LiftZone`` (Lift plus the marked zone) once; robosuite registers env classes when they
    are defined, so this must run before ``suite.make("LiftZone")``."""
    global _registered
    if _registered:
        return
    import xml.etree.ElementTree as ET

    from robosuite.environments.manipulation.lift import Lift

    class LiftZone(Lift):
        """robosuite's Lift with a translucent blue disc on the table: the zone the arm should keep away from.
        Visual only (no contacts), so physics are Lift's."""

        def _load_model(self):
            super()._load_model()
            x, y = ZONE.center
            marker = ET.Element("geom", name="keepout_zone", type="cylinder", pos=f"{x} {y} {TABLE_TOP + 0.001}",
                                size=f"{ZONE_RADIUS} 0.001", rgba="0.1 0.35 1 0.8", contype="0", conaffinity="0",
                                group="1")  # fmt: skip
            self.model.worldbody.append(marker)

    globals()["LiftZone"] = LiftZone
    _registered = True
