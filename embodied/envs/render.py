"""Fast offscreen camera rendering of a MuJoCo model, tuned for software OpenGL; shared by the MuJoCo envs.

robosuite's own camera path renders at ~12-20 fps at 84 px on a 2-core CPU; most of that is shadows,
multisampling, reflections and the arm's high-polygon visual meshes, none of which a policy at 84 px needs.
We render through a private copy of the model whose visual settings are changed (physics never sees it),
with an offscreen buffer sized to the image.
"""

from __future__ import annotations

import atexit
import copy
import os
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from embodied.configs.checks import at_least


@dataclass
class RenderConfig:
    """Render options chosen for a software rasteriser (Mesa on a 2-core CPU), where they dominate step cost.

    Measured on an 84 px agentview: robosuite defaults render ~12 fps; shadows, reflections, skybox and MSAA off
    ~45 fps; drawing the arm's collision hulls instead of its ~160k-face visual meshes ~200 fps, and ~300 with
    Mesa rendering in the calling thread, with the robot, table and objects still clearly visible. Flat
    texture colours make whole env steps ~20% faster again (92 -> 110 steps/s with one camera).
    """

    shadows: bool = False  # shadow maps cost a second pass per light
    reflections: bool = False  # the table's reflection doubles the geometry drawn
    skybox: bool = False  # the sky texture behind the scene
    offsamples: int = 0  # MSAA samples of the offscreen buffer
    textures: bool = False  # True: full textures (~20% slower steps); False: each material in its texture's mean colour
    simplify_meshes: bool = True  # draw a body's collision geometry when its visual meshes exceed face_budget
    face_budget: int = 1000  # faces per body above which its visual meshes are swapped for collision geometry

    CHECKS: ClassVar = {"offsamples": at_least(0), "face_budget": at_least(1)}


_HIDDEN_GROUP = 5  # a geom group we never enable: where swapped-out visual meshes go
ROBOSUITE_VISUAL_GROUPS = (1, 2)  # robosuite draws group 1 (visual) and 2; group 0 is collision


def simplified_render_model(model, config: RenderConfig, visual_groups: tuple[int, ...] = ROBOSUITE_VISUAL_GROUPS):
    """Returns a copy of ``model`` for rendering only.

    A body whose visual meshes (geoms in ``visual_groups``) have more than ``config.face_budget`` faces is drawn
    with its collision geometry (colliding geoms of other groups) instead, coloured with the face-weighted mean
    colour of the visual meshes it replaces.
    """
    import mujoco

    render_model = copy.deepcopy(model)
    render_model.vis.quality.offsamples = config.offsamples
    render_model.vis.quality.shadowsize = 4096 if config.shadows else 0
    if not config.textures:
        _flatten_textures(render_model)
    if not config.simplify_meshes:
        return render_model

    mesh = mujoco.mjtGeom.mjGEOM_MESH
    by_body: dict[int, dict[str, list[int]]] = {}
    for g in range(model.ngeom):
        entry = by_body.setdefault(int(model.geom_bodyid[g]), {"visual": [], "collision": []})
        if model.geom_group[g] in visual_groups:
            entry["visual"].append(g)
        elif model.geom_contype[g] | model.geom_conaffinity[g]:
            entry["collision"].append(g)
    for entry in by_body.values():
        visual_meshes = [g for g in entry["visual"] if model.geom_type[g] == mesh]
        faces = [int(model.mesh_facenum[model.geom_dataid[g]]) for g in visual_meshes]
        if sum(faces) <= config.face_budget or not entry["collision"]:
            continue
        colours = np.array([_geom_colour(model, g) for g in visual_meshes])
        colour = (colours * np.array(faces)[:, None]).sum(0) / sum(faces)
        for g in visual_meshes:
            render_model.geom_group[g] = _HIDDEN_GROUP
        for g in entry["collision"]:
            render_model.geom_group[g] = visual_groups[0]
            render_model.geom_matid[g] = -1
            render_model.geom_rgba[g] = [*colour[:3], 1.0]
    return render_model


def _flatten_textures(model) -> None:
    """Replaces each textured material by its texture's mean colour (a wood table stays wood-coloured)."""
    for mat in range(model.nmat):
        textures = [t for t in np.atleast_1d(model.mat_texid[mat]) if t >= 0]
        if not textures:
            continue
        tex = textures[0]
        channels = int(model.tex_nchannel[tex])
        size = int(model.tex_width[tex] * model.tex_height[tex] * channels)
        pixels = model.tex_data[model.tex_adr[tex] : model.tex_adr[tex] + size].reshape(-1, channels)
        mean = pixels[:, :3].mean(0) / 255.0 if channels >= 3 else np.repeat(pixels.mean() / 255.0, 3)
        model.mat_rgba[mat, :3] = model.mat_rgba[mat, :3] * mean
        model.mat_texid[mat] = -1


def _geom_colour(model, g: int) -> np.ndarray:
    mat = model.geom_matid[g]
    return np.array(model.mat_rgba[mat] if mat >= 0 else model.geom_rgba[g], dtype=np.float64)


class CameraRenderer:
    """Renders named cameras of a live simulation to uint8 (H, W, 3) arrays.

    Args:
        model, data: the simulation's ``mujoco.MjModel``/``MjData`` (data is read, never written).
        height, width: image size in pixels.
        config: render settings.
        visual_groups: the geom groups drawn (robosuite: 1 and 2; Meta-World: 0-2, MuJoCo's default).
        restyle: ``restyle(render_model)`` changes how the scene looks (a visual domain), after simplification.
        scene_hook: ``scene_hook(scene, render_model, camera_id)`` after each scene update (moving the view).
    """

    def __init__(
        self, model, data, height: int, width: int, config: RenderConfig,
        visual_groups: tuple[int, ...] = ROBOSUITE_VISUAL_GROUPS, restyle=None, scene_hook=None,
    ):  # fmt: skip
        import mujoco

        self.data = data
        self.model = simplified_render_model(model, config, visual_groups)
        if restyle is not None:  # another visual domain: only the drawn copy changes, never the simulation
            restyle(self.model)
        self.scene_hook = scene_hook
        # The offscreen framebuffer defaults to 640x480; clearing and reading a buffer that large costs more
        # than drawing an 84 px scene.
        self.model.vis.global_.offwidth = width
        self.model.vis.global_.offheight = height
        try:
            self.renderer = mujoco.Renderer(self.model, height, width)
        except Exception as error:
            raise RuntimeError(
                f"MuJoCo could not create an offscreen OpenGL context ({error}); MUJOCO_GL="
                f"{os.environ.get('MUJOCO_GL')!r}. MuJoCo fixes its GL backend when first imported: import "
                "embodied envs before mujoco, or set MUJOCO_GL=egl (or osmesa) yourself"
            ) from error
        self.option = mujoco.MjvOption()
        for group in range(len(self.option.geomgroup)):
            self.option.geomgroup[group] = group in visual_groups
        flags = mujoco.mjtRndFlag
        # EGL contexts freed during interpreter shutdown print errors; free ours first.
        atexit.register(self.close)
        self._flags = {
            flags.mjRND_SHADOW: config.shadows,
            flags.mjRND_REFLECTION: config.reflections,
            flags.mjRND_SKYBOX: config.skybox,
        }

    def render(self, camera: str) -> np.ndarray:
        """Returns the camera's current view, uint8 (H, W, 3), upright."""
        self.renderer.update_scene(self.data, camera=camera, scene_option=self.option)
        if self.scene_hook is not None:
            import mujoco

            camera_id = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
            self.scene_hook(self.renderer.scene, self.model, camera_id)
        for flag, on in self._flags.items():
            self.renderer.scene.flags[flag] = on
        return self.renderer.render()

    def close(self) -> None:
        """Frees the GL context and buffers."""
        if self.renderer is not None:
            self.renderer.close()
            self.renderer = None
            atexit.unregister(self.close)
