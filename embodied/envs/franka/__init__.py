"""The Franka Panda in robosuite: tasks, scripted experts and fast headless rendering."""

from embodied.envs.franka.config import FrankaConfig, RenderConfig
from embodied.envs.franka.tasks import TASKS

__all__ = ["FrankaConfig", "RenderConfig", "TASKS"]
