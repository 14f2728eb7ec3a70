"""Scripted experts for the franka tasks: waypoint state machines on privileged simulator state.

Each expert reads object and gripper poses from the simulator, moves through waypoints with a
proportional controller in the Open-X action space, and adds Gaussian noise to its commands so the
demonstrations cover small deviations instead of a single degenerate path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embodied.envs import ExpertConfig
from embodied.registry import Registry

_POS_SCALE = 0.05  # metres per unit action (robosuite OSC_POSE output_max)
_ROT_SCALE = 0.5  # radians per unit action
OPEN, CLOSE = -1.0, 1.0


@dataclass
class _Waypoint:
    name: str
    target: np.ndarray  # (3,) end-effector position, world frame, metres
    gripper: float
    tolerance: float = 0.01  # metres; waypoint reached when closer than this
    hold: int = 0  # steps to stay after reaching (e.g. while the fingers close)
    max_steps: int = 60  # give up waiting and move on


class PickPlaceExpert:
    """Grasp an object from above, lift it, and (optionally) carry it to a place target and release.

    Subclasses say which body to grasp, where to put it and how high to lift.
    """

    lift_height = 0.12
    place_clearance: float | None = None  # height above the place target to release at; None: lift only
    align_yaw = True  # cubes: turn the fingers onto the faces; cylinders need no alignment

    def __init__(self, env, config: ExpertConfig | None = None):
        self.env = env
        self.sim_env = env.sim
        self.config = config or ExpertConfig()
        self.rng = np.random.default_rng(self.config.seed)
        self._plan: list[_Waypoint] = []

    # -------------------------------------------------------------- per task
    def object_body(self) -> str:
        """The name of the body to grasp."""
        raise NotImplementedError

    def place_target(self) -> np.ndarray | None:
        """Where to put the object (world frame, m); None: lift only."""
        return None

    def approach(self, start: np.ndarray) -> list[_Waypoint]:
        """Waypoints before the one above the object (none: straight there)."""
        return []

    # -------------------------------------------------------------- control
    def reset(self, seed: int | None = None) -> None:
        """Call after env.reset: plans the waypoints from the new scene."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        start = self._object_pos()
        grasp = start + np.array([0.0, 0.0, 0.005])
        plan = self.approach(start) + [
            _Waypoint("above", start + [0, 0, 0.10], OPEN, tolerance=0.015),
            _Waypoint("descend", grasp, OPEN, tolerance=0.008),
            _Waypoint("grasp", grasp, CLOSE, tolerance=1.0, hold=6),
            _Waypoint("lift", grasp + [0, 0, self.lift_height], CLOSE, tolerance=0.02),
        ]
        target = self.place_target()
        if target is not None:
            carry = np.array([target[0], target[1], grasp[2] + self.lift_height])
            release = target + [0, 0, self.place_clearance]
            plan += [
                _Waypoint("carry", carry, CLOSE, tolerance=0.015, max_steps=80),
                _Waypoint("lower", release, CLOSE, tolerance=0.01),
                _Waypoint("release", release, OPEN, tolerance=1.0, hold=5),
                _Waypoint("retreat", release + [0, 0, 0.12], OPEN, tolerance=0.02, max_steps=1000),
            ]
        else:
            plan[-1].max_steps = 1000
        self._plan = plan
        self._index = 0
        self._steps_in_waypoint = 0
        self._held = 0

    def act(self, obs=None) -> np.ndarray:
        """The next 7-D action; ``obs`` is unused: the expert reads the simulator directly."""
        waypoint = self._plan[self._index]
        error = waypoint.target - self._eef_pos()
        if np.linalg.norm(error) < waypoint.tolerance:
            self._held += 1
        if (self._held > waypoint.hold or self._steps_in_waypoint >= waypoint.max_steps) and self._index < len(
            self._plan
        ) - 1:
            self._index += 1
            self._steps_in_waypoint = self._held = 0
            waypoint = self._plan[self._index]
            error = waypoint.target - self._eef_pos()
        self._steps_in_waypoint += 1

        action = np.zeros(7)
        action[:3] = self.config.gain * error / _POS_SCALE
        if self.align_yaw and waypoint.name in ("above", "descend"):
            action[5] = self._yaw_error() / _ROT_SCALE
        action[:6] += self.rng.normal(0.0, self.config.noise, 6)
        action[6] = waypoint.gripper
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    @property
    def phase(self) -> str:
        """The current waypoint's name (grasp, lift, ...)."""
        return self._plan[self._index].name

    # the stage captions (Lang4Sim2Real's templated descriptions); {object} and {target} are the task's nouns
    object_noun = "the red cube"
    target_noun: str | None = None
    CAPTIONS = {
        "via": "gripper open, moving toward {object}",
        "above": "gripper open, reaching above {object}",
        "descend": "gripper open, lowering onto {object}",
        "grasp": "gripper closing around {object}",
        "lift": "{object} grasped, lifting it",
        "carry": "{object} lifted, carrying it to {target}",
        "lower": "lowering {object} onto {target}",
        "release": "gripper opening, releasing {object} on {target}",
        "retreat": "{object} placed on {target}, gripper moving up",
    }
    LIFTED = "{object} lifted"  # lift tasks once the object is up (the env's success check)

    def caption(self) -> str:
        """A templated description of the stage of the step just chosen by :meth:`act` (what Lang4Sim2Real
        supervises images with): the waypoint's template, and "lifted" once a lift-only task succeeds."""
        nouns = {"object": self.object_noun, "target": self.target_noun or ""}
        if self.phase == "lift" and self.place_target() is None and self.sim_env._check_success():
            return self.LIFTED.format(**nouns)
        return self.CAPTIONS[self.phase].format(**nouns)

    # -------------------------------------------------------------- simulator state
    def _eef_pos(self) -> np.ndarray:
        robot = self.sim_env.robots[0]
        return np.array(self.sim_env.sim.data.site_xpos[robot.eef_site_id["right"]])

    def _object_pos(self) -> np.ndarray:
        sim = self.sim_env.sim
        return np.array(sim.data.body_xpos[sim.model.body_name2id(self.object_body())])

    def _yaw_error(self) -> np.ndarray:
        """Rotation about world z that turns the fingers onto the object's faces (cubes: modulo 90 degrees)."""
        sim = self.sim_env.sim
        robot = self.sim_env.robots[0]
        gripper_x = sim.data.site_xmat[robot.eef_site_id["right"]].reshape(3, 3)[:, 0]
        object_x = sim.data.body_xmat[sim.model.body_name2id(self.object_body())].reshape(3, 3)[:, 0]
        delta = np.arctan2(object_x[1], object_x[0]) - np.arctan2(gripper_x[1], gripper_x[0])
        return (delta + np.pi / 4) % (np.pi / 2) - np.pi / 4


class LiftExpert(PickPlaceExpert):
    """Lift: grasp the cube and raise it."""

    def object_body(self) -> str:
        """The cube."""
        return self.sim_env.cube.root_body


class LiftZoneExpert(LiftExpert):
    """lift_zone: lift the cube after an approach graded by ``config.style`` (see
    :mod:`embodied.envs.franka.preference_tasks`): +1 straight to the cube, -1 a detour over the zone's centre."""

    def approach(self, start: np.ndarray) -> list[_Waypoint]:
        """A via point part of the way towards the zone (none at style +1), at a nuisance height."""
        from embodied.envs.franka.preference_tasks import ZONE

        height = start[2] + self.rng.uniform(0.12, 0.25)  # a nuisance independent of the preference
        via_xy = ZONE.via_point(self._eef_pos(), start, self.config.style)
        if via_xy is None:
            return []
        return [_Waypoint("via", np.array([*via_xy, height]), OPEN, tolerance=0.03, max_steps=40)]


class StackExpert(PickPlaceExpert):
    """Stack: grasp cube A and release it just above cube B."""

    place_clearance = 0.055  # cubeB half-size 0.025 + cubeA half-size 0.02 + a 1 cm drop
    target_noun = "the green cube"

    def object_body(self) -> str:
        """Cube A, the one that moves."""
        return self.sim_env.cubeA.root_body

    def place_target(self) -> np.ndarray:
        """Cube B's position."""
        sim = self.sim_env.sim
        return np.array(sim.data.body_xpos[sim.model.body_name2id(self.sim_env.cubeB.root_body)])


class PickPlaceCanExpert(PickPlaceExpert):
    """PickPlaceCan: grasp the can and release it above its bin."""

    align_yaw = False
    lift_height = 0.15
    place_clearance = 0.10
    object_noun = "the can"
    target_noun = "its bin"

    def object_body(self) -> str:
        """The can."""
        return self.sim_env.objects[self.sim_env.object_id].root_body

    def place_target(self) -> np.ndarray:
        """The can's bin."""
        return np.array(self.sim_env.target_bin_placements[self.sim_env.object_id])


# the expert of each task (the env-level registry, embodied.envs.EXPERTS, maps "franka" to make_expert)
TASK_EXPERTS: Registry[type[PickPlaceExpert]] = Registry("franka expert")
TASK_EXPERTS.register("lift")(LiftExpert)
TASK_EXPERTS.register("lift_zone")(LiftZoneExpert)
TASK_EXPERTS.register("stack")(StackExpert)
TASK_EXPERTS.register("pick_place_can")(PickPlaceCanExpert)


def make_expert(env, config: ExpertConfig | None = None) -> PickPlaceExpert:
    """The scripted expert for a franka env's task."""
    return TASK_EXPERTS.get(env.config.task)(env, config)
