"""The Franka Panda in robosuite (Lift, Stack, PickPlaceCan) behind the gymnasium API, Open-X conventions.

Observations: ``images/<camera>`` uint8 (H, W, 3), ``proprio`` float32 (9,) = end-effector position (3, m,
world frame), orientation quaternion (4, xyzw), gripper finger positions (2, m); ``state`` float32:
the task's object state (privileged, for state-only policies and experts); ``language_instruction``: the
task's language instruction; tasks with a hidden preference (``lift_zone``) also report ``preference_cost`` float32,
the privileged per-step cost the person minimises (:mod:`~embodied.envs.franka.preference_tasks`).
Action: 7-D in [-1, 1]: end-effector position delta (3, scaled to 5 cm), axis-angle rotation delta (3, scaled to
0.5 rad), gripper (-1 open, +1 close): robosuite's OSC_POSE controller.
"""

from __future__ import annotations

from dataclasses import asdict

import gymnasium as gym
import numpy as np

from embodied.envs.base import Env
from embodied.envs.franka._robosuite import import_robosuite
from embodied.envs.franka.config import FrankaConfig
from embodied.envs.franka.tasks import get_task
from embodied.features import INSTRUCTION, PREFERENCE_COST, Feature

PROPRIO_DIM = 9
ACTION_DIM = 7


def controller_config() -> dict:
    """robosuite's BASIC composite controller with only the Panda's one arm (OSC_POSE, delta, base frame)."""
    from robosuite.controllers import load_composite_controller_config

    config = load_composite_controller_config(controller="BASIC", robot="Panda")
    config["body_parts"] = {"right": config["body_parts"]["right"]}
    return config


class FrankaEnv(Env):
    """A robosuite manipulation task with the Panda arm; see the module docstring for spaces."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, config: FrankaConfig | None = None, render_mode: str | None = "rgb_array"):
        self.config = config = config or FrankaConfig()
        if config.obs_mode not in ("image", "state"):
            raise ValueError(f"env.obs_mode must be 'image' or 'state', got {config.obs_mode!r}")
        self.task = get_task(config.task)
        self.render_mode = render_mode
        self.metadata = {"render_modes": ["rgb_array"], "render_fps": config.control_freq}
        self.max_episode_steps = config.max_episode_steps or self.task.max_episode_steps
        self.cameras = list(config.cameras) if config.obs_mode == "image" else []
        suite = import_robosuite()
        if self.task.preference:
            from embodied.envs.franka.preference_tasks import PREFERENCE_COSTS, register_robosuite_envs

            register_robosuite_envs()
            self._preference_cost = PREFERENCE_COSTS[self.task.preference]
        self._sim_env = self._make_sim(suite)
        self._check_cameras()
        self._fast_stepper = self._make_fast_stepper() if config.fast_step else None
        raw = self._sim_env.reset()
        self._state_dim = int(raw["object-state"].shape[0])
        self._camera_renderer = None
        self._video_renderer = None
        self._t = 0
        self.observation_space = self.observation_space_from_features()
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)

    def _make_sim(self, suite):
        config = self.config
        return suite.make(
            self.task.robosuite_env,
            robots="Panda",
            controller_configs=controller_config(),
            has_renderer=False,
            has_offscreen_renderer=False,  # we render through our own tuned renderer
            use_camera_obs=False,
            use_object_obs=True,
            reward_shaping=False,
            control_freq=config.control_freq,
            horizon=self.max_episode_steps,
            ignore_done=True,  # time limits are ours (truncated), so robosuite never refuses a step
            hard_reset=False,  # a hard reset rebuilds the model and renderer: ~1.3 s per episode
            # robosuite draws object sizes from env.rng while building the model: a fixed seed gives every
            # instance of a config (e.g. vector-env workers) the same objects; reset(seed=) reseeds the scene.
            seed=config.model_seed,
            **self.task.make_kwargs,
        )

    def _make_fast_stepper(self):
        from embodied.envs.franka.fast_step import FastStepper, UnsupportedController

        try:
            return FastStepper(self._sim_env)
        except UnsupportedController:
            return None  # robosuite's own step

    # ------------------------------------------------------------------ description
    @property
    def features(self) -> list[Feature]:
        """Per-step features this env produces (observations and action), for stores and policies."""
        size = self.config.image_size
        features = [Feature(f"images/{c}", (size, size, 3), "uint8", "image") for c in self.cameras]
        features += [
            Feature("proprio", (PROPRIO_DIM,), "float32", "proprio"),
            Feature("state", (self._state_dim,), "float32", "state"),
            Feature("action", (ACTION_DIM,), "float32", "action"),
        ]
        if self.task.preference:
            features.append(Feature(PREFERENCE_COST, (), "float32", "reward"))
        return features

    @property
    def metadata_for_store(self) -> dict:
        """Dataset-level facts an Open-X-style store records."""
        return {
            "robot": "panda",
            "env": self.config.name,
            "control_frequency": self.config.control_freq,
            "action_space": "7-D end-effector delta in [-1, 1]: xyz (x 0.05 m), axis-angle (x 0.5 rad), "
            "gripper (-1 open, +1 close); robosuite OSC_POSE, robot base frame",
            "cameras": self.cameras,
            "env_config": asdict(self.config),
        }

    def _check_cameras(self) -> None:
        model = self._sim_env.sim.model
        available = [model.camera_id2name(i) for i in range(model.ncam)]
        for camera in self.cameras + ([self.config.video_camera] if self.render_mode else []):
            if camera not in available:
                raise ValueError(f"camera {camera!r} not in task {self.config.task!r}; available: {available}")

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """A new scene: ``seed`` fixes it (object placement); returns (observation, info)."""
        super().reset(seed=seed)
        # robosuite's placement samplers hold a reference to env.rng: reseed it in place from our np_random,
        # so reset(seed=s) fixes the initial scene and later unseeded resets stay reproducible.
        fresh = np.random.default_rng(int(self.np_random.integers(2**63)))
        self._sim_env.rng.bit_generator.state = fresh.bit_generator.state
        raw = self._sim_env.reset()
        self._t = 0
        return self._observation(raw), {"is_success": False}

    def step(self, action):
        """One control step (25 physics substeps at 20 Hz) of a 7-D action in [-1, 1]."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (ACTION_DIM,):
            raise ValueError(f"action must have shape ({ACTION_DIM},), got {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action contains NaN or inf: {action}")
        step = self._fast_stepper.step if self._fast_stepper is not None else self._sim_env.step
        raw, reward, _, _ = step(np.clip(action, -1.0, 1.0))
        self._t += 1
        success = bool(self._sim_env._check_success())
        terminated = success and self.config.terminate_on_success
        truncated = self._t >= self.max_episode_steps and not terminated
        return self._observation(raw), float(reward), terminated, truncated, {"is_success": success}

    def render(self) -> np.ndarray | None:
        """A larger frame from ``config.video_camera`` for videos (``render_mode='rgb_array'``)."""
        if self.render_mode != "rgb_array":
            return None
        if self._video_renderer is None:
            self._video_renderer = self._new_renderer(self.config.render_size)
        return self._video_renderer.render(self.config.video_camera)

    def close(self) -> None:
        """Frees the renderers and the simulation."""
        for renderer in (self._camera_renderer, self._video_renderer):
            if renderer is not None:
                renderer.close()
        self._camera_renderer = self._video_renderer = None
        self._sim_env.close()

    # ------------------------------------------------------------------ internals
    @property
    def sim(self):
        """The underlying robosuite env (privileged access for experts and tests)."""
        return self._sim_env

    def _new_renderer(self, size: int):
        from embodied.envs.render import CameraRenderer

        sim = self._sim_env.sim
        restyle = view = None
        if hasattr(self.config, "visual_domain"):  # env=franka_shifted
            from functools import partial

            from embodied.envs.domains import DomainView, apply_domain

            domain = self.config.visual_domain()
            restyle, view = partial(apply_domain, domain=domain), DomainView(domain)
        return CameraRenderer(sim.model._model, sim.data._data, size, size, self.config.render, restyle=restyle,
                              scene_hook=view)  # fmt: skip

    def _observation(self, raw: dict) -> dict:
        obs: dict = {}
        if self.cameras:
            if self._camera_renderer is None:
                self._camera_renderer = self._new_renderer(self.config.image_size)
            for camera in self.cameras:
                obs[f"images/{camera}"] = self._camera_renderer.render(camera)
        obs["proprio"] = np.concatenate(
            [raw["robot0_eef_pos"], raw["robot0_eef_quat"], raw["robot0_gripper_qpos"]]
        ).astype(np.float32)
        obs["state"] = raw["object-state"].astype(np.float32)
        if self.task.preference:
            obs[PREFERENCE_COST] = np.float32(self._preference_cost(raw["robot0_eef_pos"]))
        obs[INSTRUCTION] = self.config.instruction_prefix + self.task.instruction
        return obs
