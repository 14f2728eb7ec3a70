"""Fast offscreen camera rendering of a MuJoCo model, tuned for software OpenGL.

robosuite's own camera path renders at ~12-20 fps at 84 px on a 2-core CPU; most of that is shadows,
multisampling, reflections and the arm's high-polygon visual meshes, none of which a policy at 84 px needs.
We render through a private copy of the model whose visual settings are changed (physics never sees it),
with an offscreen buffer sized to the image.
"""

from __future__ import annotations

import atexit
import copy
import os

import numpy as np

from embodied.envs.franka.config import RenderConfig

_HIDDEN_GROUP = 5  # a geom group we never enable: where swapped-out visual meshes go
_VISUAL_GROUPS = (1, 2)  # robosuite draws group 1 (visual) and 2; group 0 is collision


def simplified_render_model(model, config: RenderConfig):
    """Returns a copy of ``model`` for rendering only.

    A body whose visual meshes have more than ``config.face_budget`` faces is drawn with its collision
    geometry instead, coloured with the face-weighted mean colour of the visual meshes it replaces.
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
        if model.geom_group[g] in _VISUAL_GROUPS:
            entry["visual"].append(g)
        elif model.geom_group[g] == 0 and model.geom_contype[g] | model.geom_conaffinity[g]:
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
            render_model.geom_group[g] = _VISUAL_GROUPS[0]
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
    """

    def __init__(self, model, data, height: int, width: int, config: RenderConfig):
        import mujoco

        self.data = data
        self.model = simplified_render_model(model, config)
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
            self.option.geomgroup[group] = group in _VISUAL_GROUPS
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
        for flag, on in self._flags.items():
            self.renderer.scene.flags[flag] = on
        return self.renderer.render()

    def close(self) -> None:
        """Frees the GL context and buffers."""
        if self.renderer is not None:
            self.renderer.close()
            self.renderer = None
            atexit.unregister(self.close)
