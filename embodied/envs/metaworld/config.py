"""Configuration of the Meta-World env: task or suite, cameras, observation mode and render settings."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar

from embodied.configs.checks import Rule, between, non_empty, one_of
from embodied.envs.base import EnvConfig
from embodied.envs.metaworld.tasks import SUITES, TASKS
from embodied.envs.render import RenderConfig

MAX_PATH_LENGTH = 500  # Meta-World's own horizon; its step() refuses to go past it
CONTROL_FREQ = 80  # Meta-World steps 5 physics substeps of 2.5 ms per action


@dataclass
class MetaWorldConfig(EnvConfig):
    """Meta-World's Sawyer tasks behind the gymnasium API (``env=metaworld``).

    ``suite=mt10|mt50`` names a multi-task suite: collection and evaluation then run each of its tasks in turn
    (:meth:`suite_tasks`), with ``episodes`` per task, and report per task and the suite's mean.
    """

    name: str = "metaworld"  # registry name; selects the env class
    task: str = "reach-v3"  # any of the 50 v3 tasks (embodied.envs.metaworld.tasks.TASKS)
    # mt10 | mt50 | tasks joined by "+" (reach-v3+push-v3): every task of the suite in turn (task= is then
    # ignored); null: task= only
    suite: str | None = None
    obs_mode: str = "image"  # "image": cameras + proprio + state; "state": no rendering at all
    # Meta-World's cameras: corner, corner2, corner3, corner4, topview, behindGripper, gripperPOV
    cameras: list[str] = field(default_factory=lambda: ["corner"])
    image_size: int = 84  # square camera images, pixels
    upright: bool = True  # turn views of cameras mounted upside down (corner, corner2) by 180 degrees
    control_freq: int = CONTROL_FREQ  # fixed by Meta-World (5 x 2.5 ms substeps per action); recorded for videos
    max_episode_steps: int = (
        200  # time limit; Meta-World's own is 500 (its scripted policies finish MT10 tasks in 50-120)
    )
    terminate_on_success: bool = True  # end the episode (terminated=True) at the first success
    # a hidden preference (embodied.envs.metaworld.env.PREFERENCES): avoid_zone -> the env reports a per-step
    # preference_cost (the hand near a zone right of the objects; not drawn) and the expert's style detours into it
    preference: str | None = None
    render_size: int = 256  # frames returned by render(), for videos
    video_camera: str = "corner"  # the camera of render() frames (videos)
    render: RenderConfig = field(default_factory=RenderConfig)  # renderer settings (cameras and videos)
    instruction_prefix: str = ""  # put before the task's instruction (a domain prefix, as for env=franka)

    CHECKS: ClassVar = {
        "suite": Rule("mt10, mt50 or v3 task names joined by +", lambda v: v is None or _suite(v) is not None),
        "obs_mode": one_of("image", "state"), "cameras": non_empty(),
        "image_size": between(8, 1024), "control_freq": one_of(CONTROL_FREQ),
        "max_episode_steps": between(1, MAX_PATH_LENGTH), "render_size": between(8, 2048),
        "preference": Rule("null or avoid_zone", lambda v: v in (None, "avoid_zone")),
    }  # fmt: skip

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"env.task={self.task!r}: not a Meta-World v3 task; one of {', '.join(TASKS)}")

    def suite_tasks(self) -> list[str]:
        """The suite's tasks in Meta-World's order; empty without ``suite``."""
        return _suite(self.suite) or [] if self.suite else []

    def for_task(self, task: str) -> MetaWorldConfig:
        """This config, running ``task`` alone."""
        return replace(self, task=task, suite=None)

    def adapt_to(self, cameras: list[str], image_size: int | None) -> MetaWorldConfig:
        """Renders only ``cameras`` (none: ``obs_mode=state``, no rendering at all) at ``image_size``."""
        if not cameras:
            return replace(self, obs_mode="state")
        return replace(self, obs_mode="image", cameras=list(cameras), image_size=image_size or self.image_size)

    @classmethod
    def tiny(cls) -> MetaWorldConfig:
        """A small instance for contract tests: reach, one 32 px camera, 20-step episodes."""
        return cls(task="reach-v3", image_size=32, max_episode_steps=20)


@dataclass
class ShiftedMetaWorldConfig(MetaWorldConfig):
    """``env=metaworld_shifted``: Meta-World in another visual domain (:mod:`embodied.envs.domains`; the same presets
    as ``env=franka_shifted``): other colours, light and camera poses, the same physics and states."""

    name: str = "metaworld_shifted"
    physics: ClassVar[str | None] = "metaworld"
    domain: str = "warm"  # a registered look: warm | dark | bright | source (Meta-World's own)
    look: dict = field(default_factory=dict)  # fields of the domain to change, e.g. {camera_yaw: 8}

    def __post_init__(self):
        super().__post_init__()
        self.visual_domain()  # unknown domain or look fields fail here, when the config is read

    def visual_domain(self):
        """The domain this env renders: the preset with ``look`` applied."""
        from embodied.envs.domains import resolve_domain

        return resolve_domain(self.domain, self.look)


def _suite(suite: str) -> list[str] | None:
    """The tasks ``suite`` names (a registered suite or tasks joined by "+" or ","); None if it names none."""
    if suite in SUITES:
        return list(SUITES[suite])
    tasks = [t.strip() for t in str(suite).replace(",", "+").split("+") if t.strip()]
    return tasks if tasks and all(t in TASKS for t in tasks) else None
