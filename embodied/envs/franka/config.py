"""Configuration of the franka env: task, cameras, observation mode and render settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from embodied.configs.checks import at_least, non_empty, one_of, positive
from embodied.envs.base import EnvConfig
from embodied.envs.render import RenderConfig


@dataclass
class FrankaConfig(EnvConfig):
    """The Franka Panda in robosuite behind the gymnasium API (``env=franka``)."""

    name: str = "franka"  # registry name; selects the env class
    task: str = "lift"  # lift | stack | pick_place_can | lift_zone (embodied.envs.franka.tasks.TASKS)
    obs_mode: str = "image"  # "image": cameras + proprio + state; "state": no rendering at all
    cameras: list[str] = field(default_factory=lambda: ["agentview"])  # robosuite camera names
    image_size: int = 84  # square camera images, pixels
    control_freq: int = 20  # policy steps per second (robosuite runs 25 physics substeps at 20 Hz)
    max_episode_steps: int | None = None  # null: the task's own limit
    terminate_on_success: bool = True  # end the episode (terminated=True) at the first success
    model_seed: int = 0  # seeds robosuite's draw of object sizes when it builds the model
    fast_step: bool = True  # robosuite's physics and controller with less Python per substep (fast_step.py)
    render_size: int = 256  # frames returned by render(), for videos
    video_camera: str = "agentview"  # the camera of render() frames (videos)
    render: RenderConfig = field(default_factory=RenderConfig)  # renderer settings (cameras and videos)
    # put before the task's instruction, e.g. "target domain: " (Lang4Sim2Real's domain prefix, for policies that
    # condition on the instruction: the words tell them which domain they are in)
    instruction_prefix: str = ""

    CHECKS: ClassVar = {
        "obs_mode": one_of("image", "state"), "cameras": non_empty(), "image_size": at_least(8),
        "control_freq": positive(), "max_episode_steps": at_least(1), "render_size": at_least(8),
    }  # fmt: skip

    def __post_init__(self):
        from embodied.envs.franka.tasks import TASKS

        if self.task not in TASKS:
            raise ValueError(f"env.task={self.task!r}: must be one of {', '.join(TASKS.names())}")

    def adapt_to(self, cameras: list[str], image_size: int | None) -> FrankaConfig:
        """Renders only ``cameras`` (none: ``obs_mode=state``, no rendering at all) at ``image_size``."""
        from dataclasses import replace

        if not cameras:
            return replace(self, obs_mode="state")
        return replace(self, obs_mode="image", cameras=list(cameras), image_size=image_size or self.image_size)

    @classmethod
    def tiny(cls) -> FrankaConfig:
        """A small instance for contract tests: lift, one 32 px camera, 20-step episodes."""
        return cls(task="lift", image_size=32, max_episode_steps=20)


@dataclass
class ShiftedFrankaConfig(FrankaConfig):
    """``env=franka_shifted``: the franka env in another visual domain (:mod:`embodied.envs.domains`): other
    colours, light and camera poses, the same physics, so the same actions give the same states as ``env=franka``."""

    name: str = "franka_shifted"
    physics: ClassVar[str | None] = "franka"
    domain: str = "warm"  # a registered look: warm | dark | bright | source (robosuite's own)
    look: dict = field(default_factory=dict)  # fields of the domain to change, e.g. {camera_yaw: 8, table: [0,0,0,1]}

    def __post_init__(self):
        super().__post_init__()
        self.visual_domain()  # unknown domain or look fields fail here, when the config is read

    def visual_domain(self):
        """The domain this env renders: the preset with ``look`` applied."""
        from embodied.envs.domains import resolve_domain

        return resolve_domain(self.domain, self.look)
