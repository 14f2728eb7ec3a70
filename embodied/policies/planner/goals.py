"""Goal images for the planner: the final frames of successful training episodes, kept per instruction, saved in
the checkpoint (``goals.safetensors`` + ``goals.json``) so a restored planner knows what "done" looks like for each
task with no dataset at hand. A user's own goal image replaces them per call (``goal/images/<camera>``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

GOAL_PREFIX = "goal/"  # goal images are observed as goal/images/<camera>
FILES = ("goals.safetensors", "goals.json")


def goal_key(image_key: str) -> str:
    """``images/agentview`` -> ``goal/images/agentview``."""
    return GOAL_PREFIX + image_key


def collect_goals(datasets, image_keys: Sequence[str], per_task: int) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The last frame of up to ``per_task`` successful episodes per instruction (every episode when none of an
    instruction's succeeded), in store order, over the run's window datasets (their episode selections).

    Returns ({image key: uint8 (G, H, W, 3)}, instruction of each goal).
    """
    frames: dict[str, list[np.ndarray]] = {key: [] for key in image_keys}
    tasks: list[str] = []
    for dataset in datasets:
        store = dataset.store
        episodes = dataset.episodes
        ends = store.episode_ends
        success = np.asarray(store.episode_info()["success"], dtype=bool)
        last_rows = ends[episodes] - 1
        codes = store.take("language_instruction", last_rows)
        instructions = [store.instructions[int(c)] for c in codes]
        chosen: list[int] = []
        for instruction in dict.fromkeys(instructions):
            mine = [i for i, s in enumerate(instructions) if s == instruction]
            good = [i for i in mine if success[episodes[i]]] or mine
            chosen += good[:per_task]
        for key in image_keys:
            frames[key].append(store.take(key, last_rows[chosen]))
        tasks += [instructions[i] for i in chosen]
    return {key: torch.from_numpy(np.concatenate(v)) for key, v in frames.items()}, tasks


def save_goals(directory: Path, goals: dict[str, torch.Tensor], tasks: list[str]) -> None:
    """Writes the goal frames and their instructions into a checkpoint directory."""
    from safetensors.torch import save_file

    save_file({key: value.contiguous() for key, value in goals.items()}, str(directory / FILES[0]))
    (directory / FILES[1]).write_text(json.dumps({"instructions": tasks, "keys": list(goals)}, indent=1))


def load_goals(directory: Path) -> tuple[dict[str, torch.Tensor], list[str]] | None:
    """The goal frames of a checkpoint, or None when it has none (a planner saved before :meth:`fit_data`)."""
    if not (directory / FILES[0]).is_file():
        return None
    from safetensors.torch import load_file

    meta = json.loads((directory / FILES[1]).read_text())
    tensors = load_file(str(directory / FILES[0]))
    return {key: tensors[key] for key in meta["keys"]}, list(meta["instructions"])


def goal_indices(tasks: list[str], instructions: Sequence[str] | None, batch: int) -> list[list[int]]:
    """Per batch row, the goals of its instruction; every goal when the row has no instruction or the planner
    knows no goal for it (one task, or a user-worded instruction)."""
    everything = list(range(len(tasks)))
    if instructions is None:
        return [everything] * batch
    out = []
    for instruction in instructions:
        mine = [i for i, t in enumerate(tasks) if t == instruction]
        out.append(mine or everything)
    return out
