"""``policy=planner``: distance-based planning in a fine-tuned representation (Manipulate by Seeing)."""

from embodied.policies.planner.config import PlannerConfig
from embodied.policies.planner.policy import PlannerPolicy

__all__ = ["PlannerConfig", "PlannerPolicy"]
