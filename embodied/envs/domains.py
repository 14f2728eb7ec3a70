"""Visual domains: the same scene, physics and states, rendered differently (``env=franka_shifted``,
``env=metaworld_shifted``).

Lang4Sim2Real (Yu et al., RSS 2024) bridges two visually different domains whose dynamics agree. Here a domain is
a :class:`VisualDomain`: colours of the table, floor, walls and robot, the light, and the cameras' poses. It is
applied to the *render model*, the copy of the MuJoCo model the renderer draws (:mod:`embodied.envs.render`), and to
the scene it builds (camera and light poses), never to the simulated model, so the same actions give the same
states in every domain (``tests/envs``) and only pixels differ. Presets are registered in :data:`DOMAINS`;
``env.look`` overrides single fields of the chosen one.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from embodied.registry import Registry


@dataclass(frozen=True)
class VisualDomain:
    """How a domain looks. Colours are RGBA in [0, 1]; None keeps the source domain's."""

    table: tuple[float, ...] | None = None  # the table top and its legs
    floor: tuple[float, ...] | None = None
    walls: tuple[float, ...] | None = None
    robot_tint: tuple[float, ...] | None = None  # multiplies the arm's and gripper's colours (RGB)
    light_diffuse: tuple[float, ...] | None = None  # the scene light's colour and strength (RGB)
    light_offset: tuple[float, ...] = (0.0, 0.0, 0.0)  # metres added to the light's position
    headlight: float | None = None  # the viewer's headlight strength (diffuse, grey)
    camera_offset: tuple[float, ...] = (0.0, 0.0, 0.0)  # metres added to every world-fixed camera's position
    camera_yaw: float = 0.0  # degrees each camera turns about the world's vertical axis
    camera_pitch: float = 0.0  # degrees each camera tilts about its own horizontal axis (positive: up)

    def with_changes(self, changes: dict) -> VisualDomain:
        """This domain with some fields replaced (``env.look``); unknown names are refused."""
        from dataclasses import replace

        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"env.look: unknown fields {unknown}; a domain has {sorted(known)}")
        cast = {k: (tuple(float(x) for x in v) if isinstance(v, (list, tuple)) else v) for k, v in changes.items()}
        return replace(self, **cast)


DOMAINS: Registry[VisualDomain] = Registry("visual domain")
DOMAINS.register("source")(VisualDomain())  # robosuite's own look: what env=franka renders
DOMAINS.register("warm")(VisualDomain(
    table=(0.55, 0.36, 0.20, 1), floor=(0.26, 0.22, 0.19, 1), walls=(0.80, 0.70, 0.55, 1), robot_tint=(1.0, 0.88, 0.72),
    light_diffuse=(0.95, 0.78, 0.55), light_offset=(0.4, -0.6, 0.0), camera_offset=(0.0, 0.06, -0.04), camera_yaw=4.0,
))  # fmt: skip
DOMAINS.register("dark")(VisualDomain(
    table=(0.16, 0.16, 0.19, 1), floor=(0.05, 0.05, 0.08, 1), walls=(0.10, 0.12, 0.26, 1), robot_tint=(0.6, 0.62, 0.75),
    light_diffuse=(0.5, 0.5, 0.56), headlight=0.15, camera_offset=(0.05, -0.05, 0.05), camera_pitch=-4.0,
))  # fmt: skip
DOMAINS.register("bright")(VisualDomain(
    table=(0.35, 0.60, 0.85, 1), floor=(0.30, 0.55, 0.30, 1), walls=(0.95, 0.95, 1.0, 1), robot_tint=(0.85, 0.95, 1.0),
    light_diffuse=(1.0, 1.0, 1.0), headlight=0.6, camera_offset=(-0.04, -0.06, 0.0), camera_yaw=-5.0,
))  # fmt: skip


@dataclass(frozen=True)
class SceneParts:
    """Which parts of an env family's MuJoCo model a domain recolours, by name."""

    table: tuple[str, ...]  # materials of the table
    floor: tuple[str, ...]  # materials of the floor
    walls: tuple[str, ...]  # materials of the walls
    robot: tuple[str, ...]  # prefixes of the robot's material, geom or body names (its colours are tinted)


FRANKA_PARTS = SceneParts(table=("table_ceramic", "table_legs_metal", "table_mat"), floor=("floorplane",),
                          walls=("walls_mat",), robot=("robot0_", "gripper0_"))  # fmt: skip
METAWORLD_PARTS = SceneParts(table=("table_wood", "table_col"), floor=("basic_floor",), walls=("wall_metal",),
                             robot=("right_", "hand", "rightclaw", "rightpad", "leftclaw", "leftpad", "base",
                                    "pedestal", "torso", "head", "screen", "controller_box"))  # fmt: skip


def resolve_domain(domain: str, look: dict) -> VisualDomain:
    """The registered preset ``domain`` with ``look``'s fields changed (the envs' ``visual_domain()``)."""
    if domain not in DOMAINS:
        raise ValueError(f"env.domain={domain!r}: must be one of {', '.join(DOMAINS.names())}")
    return DOMAINS.get(domain).with_changes(dict(look))


def apply_domain(model, domain: VisualDomain, parts: SceneParts = FRANKA_PARTS) -> None:
    """Restyles ``model`` (a render model: never the simulated one) in place: colours and light strength (poses are
    :class:`DomainView`'s)."""
    import mujoco

    def name(kind, index: int) -> str:
        return mujoco.mj_id2name(model, kind, index) or ""

    def material(name: str) -> int:
        return mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_MATERIAL, name)

    for names, rgba in ((parts.table, domain.table), (parts.floor, domain.floor), (parts.walls, domain.walls)):
        if rgba is None:
            continue
        for name_ in names:
            m = material(name_)
            if m >= 0:
                model.mat_rgba[m] = rgba
                model.mat_texid[m] = -1  # a plain colour, even when textures are drawn
    if domain.robot_tint is not None:
        tint = np.asarray(domain.robot_tint[:3])
        robot = parts.robot
        for m in range(model.nmat):
            if name(mujoco.mjtObj.mjOBJ_MATERIAL, m).startswith(robot):
                model.mat_rgba[m, :3] *= tint
        for g in range(model.ngeom):
            if name(mujoco.mjtObj.mjOBJ_GEOM, g).startswith(robot) or (
                model.geom_matid[g] < 0 and name(mujoco.mjtObj.mjOBJ_BODY, model.geom_bodyid[g]).startswith(robot)
            ):
                model.geom_rgba[g, :3] *= tint
    if domain.light_diffuse is not None:
        model.light_diffuse[:] = domain.light_diffuse[:3]
    if domain.headlight is not None:
        model.vis.headlight.diffuse[:] = domain.headlight


def _rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    """The 3x3 rotation by ``degrees`` about unit ``axis`` (Rodrigues)."""
    angle = np.deg2rad(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


class DomainView:
    """Moves the drawn view after MuJoCo builds the scene: camera and light poses come from the simulation's data,
    so they are changed in the scene's GL cameras and lights, never in the simulation. Cameras fixed in the world
    are shifted by ``camera_offset``, turned by ``camera_yaw`` about the vertical and tilted by ``camera_pitch``
    about their own horizontal axis; cameras on the robot are left alone."""

    def __init__(self, domain: VisualDomain):
        self.domain = domain

    def __call__(self, scene, model, camera_id: int) -> None:
        d = self.domain
        for light in scene.lights[: scene.nlight]:
            if not light.headlight:
                light.pos[:] = np.asarray(light.pos) + np.asarray(d.light_offset)
        if camera_id < 0 or model.cam_bodyid[camera_id] != 0:
            return
        if not (any(d.camera_offset) or d.camera_yaw or d.camera_pitch):
            return
        for eye in scene.camera:  # both eyes of the stereo pair (one when mono)
            forward, up = np.asarray(eye.forward, dtype=np.float64), np.asarray(eye.up, dtype=np.float64)
            turn = _rotation(np.array([0.0, 0.0, 1.0]), d.camera_yaw)
            forward, up = turn @ forward, turn @ up
            right = np.cross(forward, up)
            tilt = _rotation(right / np.linalg.norm(right), d.camera_pitch)
            eye.forward[:], eye.up[:] = tilt @ forward, tilt @ up
            eye.pos[:] = np.asarray(eye.pos) + np.asarray(d.camera_offset)
