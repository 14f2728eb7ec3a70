"""Meta-World's 50 Sawyer tasks (MT10/MT50 suites) with its scripted policies as experts and our instructions."""

from embodied.envs.metaworld.config import MetaWorldConfig
from embodied.envs.metaworld.tasks import INSTRUCTIONS, SUITES, TASKS

__all__ = ["INSTRUCTIONS", "MetaWorldConfig", "SUITES", "TASKS"]
