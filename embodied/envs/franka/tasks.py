"""The franka tasks: which robosuite environment each wraps, its instruction and its time limit."""

from __future__ import annotations

from dataclasses import dataclass, field

from embodied.registry import Registry


@dataclass(frozen=True)
class Task:
    """One franka task (``env.task=<name>``)."""

    robosuite_env: str  # the robosuite environment class name
    instruction: str  # the episode's language instruction
    # Long enough for the scripted expert with noise and a few steps to spare; policies get the same limit.
    max_episode_steps: int
    make_kwargs: dict = field(default_factory=dict)  # extra robosuite.make arguments
    # a hidden preference (embodied.envs.franka.preference_tasks.PREFERENCE_COSTS): the env reports its per-step
    # cost as the `preference_cost` feature; None: success is all that matters
    preference: str | None = None


TASKS: Registry[Task] = Registry("franka task")
TASKS.register("lift")(Task("Lift", "lift the red cube", 100))
TASKS.register("stack")(Task("Stack", "stack the red cube on the green cube", 200))
TASKS.register("pick_place_can")(Task("PickPlaceCan", "put the can in its bin", 250))
# Lift with a marked zone the person wants the arm kept away from (RAPL-style hidden preference)
TASKS.register("lift_zone")(Task("LiftZone", "lift the red cube", 130, preference="avoid_zone"))


def get_task(name: str) -> Task:
    """The task registered as ``name`` (KeyError listing the tasks otherwise)."""
    return TASKS.get(name)
