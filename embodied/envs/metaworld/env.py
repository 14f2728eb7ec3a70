"""Meta-World's Sawyer tasks behind the gymnasium API, with the same observation layout as franka.

Observations: ``images/<camera>`` uint8 (H, W, 3), rendered by our tuned renderer (:mod:`embodied.envs.render`), upright
(``upright``: Meta-World's corner cameras are mounted upside down);
``proprio`` float32 (4,) = end-effector position (3, m, world frame) and gripper opening (1, 0 closed .. 1 open);
``state`` float32 (39,) = Meta-World's own observation (privileged): hand and gripper, the objects' positions and
quaternions (padded to two objects), the same for the previous step, and the goal position (the multi-task
setting, where the goal is observed); ``language_instruction``: our instruction for the task
(:mod:`embodied.envs.metaworld.tasks`); with ``preference=avoid_zone``, ``preference_cost`` float32 (the hidden
preference's per-step cost, :mod:`embodied.envs.preferences`).

Action: 4-D in [-1, 1]: end-effector position delta (3, x 1 cm per step: Meta-World's mocap ``action_scale``), and
gripper effort (-1 open, +1 close), the Open-X convention; no rotation (Meta-World keeps the gripper pointing
down). Each step is 5 physics substeps of 2.5 ms (80 Hz).

Seeds: ``reset(seed=s)`` draws the task's object and goal positions from an RNG seeded with ``s``, from the same
range and with the same rejection rule (e.g. goal not too close to the object) that Meta-World's benchmarks use
when they draw their fixed goals (``metaworld._make_tasks``); only the RNG differs, so each of our seeds is one
scene, and evaluation seeds (``EVAL_SEED_OFFSET`` and above) never repeat a collection scene.
"""

from __future__ import annotations

from dataclasses import asdict

import gymnasium as gym
import numpy as np

from embodied.envs.base import Env
from embodied.envs.metaworld._metaworld import import_metaworld
from embodied.envs.metaworld.config import MAX_PATH_LENGTH, MetaWorldConfig
from embodied.envs.metaworld.tasks import INSTRUCTIONS
from embodied.envs.preferences import Zone
from embodied.features import INSTRUCTION, PREFERENCE_COST, Feature

PROPRIO_DIM = 4
STATE_DIM = 39
ACTION_DIM = 4
# env.preference -> the zone whose per-step cost the env reports: right of the objects (x -0.1..0.1, y 0.55..0.9)
# and of the hand's start (0, 0.6), so straight paths cost ~0 and the expert's detour (style < 1) pays for itself
PREFERENCES = {"avoid_zone": Zone(center=(0.25, 0.65), falloff=0.15)}
VISUAL_GROUPS = (0, 1, 2)  # what Meta-World's own renderer draws (MuJoCo's default geom groups), goal markers too


def build_task(task: str):
    """Meta-World's env for ``task``, set up as its multi-task benchmarks set it up (goal observed), but drawing a
    fresh scene from its own seeded RNG at each reset instead of cycling through a fixed list."""
    import_metaworld()
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS, ML1_ARGS_KWARGS

    sim = ALL_V3_ENVIRONMENTS[task]()  # render_mode None: cameras go through our renderer
    kwargs = dict(ML1_ARGS_KWARGS[task]["kwargs"])
    kwargs.pop("task_id", None)
    sim._set_task_inner(**kwargs)
    sim._set_task_called = True
    if sim._partially_observable:
        sim._partially_observable = False  # the MT setting: the goal position is part of the observation
        sim.__dict__.pop("sawyer_observation_space", None)  # a cached_property computed for the other setting
    sim._freeze_rand_vec = False  # draw object/goal positions at each reset ...
    sim.seeded_rand_vec = True  # ... from sim.np_random, which reset(seed=) seeds
    return sim


class MetaWorldEnv(Env):
    """One Meta-World v3 task; see the module docstring for spaces and seeds."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 80}

    def __init__(self, config: MetaWorldConfig | None = None, render_mode: str | None = "rgb_array"):
        self.config = config = config or MetaWorldConfig()
        if config.suite:
            raise ValueError(
                f"env.suite={config.suite} names {len(config.suite_tasks())} tasks; an env runs one: collection and "
                "evaluation run a suite's tasks in turn (config.for_task(task))"
            )
        self.render_mode = render_mode
        self.metadata = {"render_modes": ["rgb_array"], "render_fps": config.control_freq}
        self.max_episode_steps = config.max_episode_steps
        self.cameras = list(config.cameras) if config.obs_mode == "image" else []
        self._sim = build_task(config.task)
        self._sim.max_path_length = MAX_PATH_LENGTH
        self._check_cameras()
        self._upside_down = self._upside_down_cameras() if config.upright else set()
        self._camera_renderer = None
        self._video_renderer = None
        self._raw = None
        self._t = 0
        self.observation_space = self.observation_space_from_features()
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)

    # ------------------------------------------------------------------ description
    @property
    def features(self) -> list[Feature]:
        """Per-step features this env produces (observations and action), for stores and policies."""
        size = self.config.image_size
        features = [Feature(f"images/{c}", (size, size, 3), "uint8", "image") for c in self.cameras]
        features += [
            Feature("proprio", (PROPRIO_DIM,), "float32", "proprio"),
            Feature("state", (STATE_DIM,), "float32", "state"),
            Feature("action", (ACTION_DIM,), "float32", "action"),
        ]
        if self.config.preference:
            features.append(Feature(PREFERENCE_COST, (), "float32", "reward"))
        return features

    @property
    def metadata_for_store(self) -> dict:
        """Dataset-level facts an Open-X-style store records."""
        return {
            "robot": "sawyer",
            "env": "metaworld",
            "control_frequency": self.config.control_freq,
            "action_space": "4-D in [-1, 1]: end-effector xyz delta (x 0.01 m per step, mocap), gripper effort "
            "(-1 open, +1 close); Meta-World v3, world frame",
            "cameras": self.cameras,
            "env_config": asdict(self.config),
        }

    def _check_cameras(self) -> None:
        model = self._sim.model
        available = [model.camera(i).name for i in range(model.ncam)]
        for camera in self.cameras + ([self.config.video_camera] if self.render_mode else []):
            if camera not in available:
                raise ValueError(f"camera {camera!r} not in Meta-World's {self.config.task}; available: {available}")

    def _upside_down_cameras(self) -> set[str]:
        """Cameras whose image "up" points below the horizon: Meta-World's corner views render upside down (its
        own render path too); we turn those images by 180 degrees so people and pretrained encoders see the
        scene the right way up."""
        import mujoco

        model, data = self._sim.model, self._sim.data
        mujoco.mj_forward(model, data)
        names = [model.camera(i).name for i in range(model.ncam)]
        return {name for i, name in enumerate(names) if data.cam_xmat[i].reshape(3, 3)[2, 1] < 0}

    def _render(self, renderer, camera: str) -> np.ndarray:
        image = renderer.render(camera)
        return np.ascontiguousarray(image[::-1, ::-1]) if camera in self._upside_down else image

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """A new scene: ``seed`` fixes the object and goal positions; returns (observation, info)."""
        super().reset(seed=seed)
        self._sim.seed(int(self.np_random.integers(2**31)))
        raw, _ = self._sim.reset()
        self._raw = raw
        self._t = 0
        return self._observation(raw), {"is_success": False}

    def step(self, action):
        """One control step (5 physics substeps, 12.5 ms) of a 4-D action in [-1, 1]."""
        action = np.asarray(action, dtype=np.float32)
        if action.shape != (ACTION_DIM,):
            raise ValueError(f"action must have shape ({ACTION_DIM},), got {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action contains NaN or inf: {action}")
        raw, reward, _, _, info = self._sim.step(np.clip(action, -1.0, 1.0))
        self._raw = raw
        self._t += 1
        success = bool(info.get("success", False))
        terminated = success and self.config.terminate_on_success
        truncated = self._t >= self.max_episode_steps and not terminated
        return self._observation(raw), float(reward), terminated, truncated, {"is_success": success}

    def render(self) -> np.ndarray | None:
        """A larger frame from ``config.video_camera`` for videos (``render_mode='rgb_array'``)."""
        if self.render_mode != "rgb_array":
            return None
        if self._video_renderer is None:
            self._video_renderer = self._new_renderer(self.config.render_size)
        return self._render(self._video_renderer, self.config.video_camera)

    def close(self) -> None:
        """Frees the renderers and the simulation."""
        for renderer in (self._camera_renderer, self._video_renderer):
            if renderer is not None:
                renderer.close()
        self._camera_renderer = self._video_renderer = None
        self._sim.close()

    # ------------------------------------------------------------------ internals
    @property
    def sim(self):
        """The underlying Meta-World env (privileged access for experts and tests)."""
        return self._sim

    @property
    def raw_observation(self) -> np.ndarray:
        """Meta-World's own 39-D observation after the last reset or step (float64), what its scripted policies read."""
        return self._raw

    def _new_renderer(self, size: int):
        from embodied.envs.render import CameraRenderer

        restyle = view = None
        if hasattr(self.config, "visual_domain"):  # env=metaworld_shifted
            from functools import partial

            from embodied.envs.domains import METAWORLD_PARTS, DomainView, apply_domain

            domain = self.config.visual_domain()
            restyle, view = partial(apply_domain, domain=domain, parts=METAWORLD_PARTS), DomainView(domain)
        return CameraRenderer(self._sim.model, self._sim.data, size, size, self.config.render, VISUAL_GROUPS,
                              restyle=restyle, scene_hook=view)  # fmt: skip

    def _observation(self, raw: np.ndarray) -> dict:
        obs: dict = {}
        if self.cameras:
            if self._camera_renderer is None:
                self._camera_renderer = self._new_renderer(self.config.image_size)
            for camera in self.cameras:
                obs[f"images/{camera}"] = self._render(self._camera_renderer, camera)
        obs["proprio"] = raw[:PROPRIO_DIM].astype(np.float32)
        obs["state"] = raw.astype(np.float32)
        if self.config.preference:
            obs[PREFERENCE_COST] = np.float32(PREFERENCES[self.config.preference].cost(raw[:3]))
        obs[INSTRUCTION] = self.config.instruction_prefix + INSTRUCTIONS[self.config.task]
        return obs
