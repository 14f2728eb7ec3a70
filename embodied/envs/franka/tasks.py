"""The franka tasks: which robosuite environment each wraps, its instruction and its time limit."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Task:
    robosuite_env: str
    instruction: str
    # Long enough for the scripted expert with noise and a few steps to spare; policies get the same limit.
    max_episode_steps: int
    make_kwargs: dict = field(default_factory=dict)


TASKS: dict[str, Task] = {
    "lift": Task("Lift", "lift the red cube", 100),
    "stack": Task("Stack", "stack the red cube on the green cube", 200),
    "pick_place_can": Task("PickPlaceCan", "put the can in its bin", 250),
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown franka task {name!r}; available: {', '.join(sorted(TASKS))}") from None
