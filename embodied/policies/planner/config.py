"""``policy=planner``: the config of distance-based planning in a representation (Manipulate by Seeing)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from embodied.configs.checks import at_least, between, non_empty, one_of
from embodied.policies.config import PolicyConfig


@dataclass
class PlannerConfig(PolicyConfig):
    """Wang, Dasari et al. (ICCV 2023): a fine-tuned representation R and a dynamics model F pick, at each step,
    the action direction whose predicted next embedding is closest to the goal image's.

    Defaults are the paper's where it gives them (ResNet-18, 128-d normalised embeddings, a 128-wide dynamics MLP,
    cosine similarities, colour jitter 0.2 and grey 0.05, Adam at 1e-3); the rest is documented per field.
    """

    name: str = "planner"
    horizon: int = 1  # the chosen action, repeated horizon times (the planner replans every n_action_steps)
    n_action_steps: int = 1
    # R's backbone (any registered encoder), fine-tuned by default; the paper's augmentation
    encoder: Any = field(default_factory=lambda: {"name": "resnet18", "color_jitter": 0.2, "grayscale": 0.05})
    share_encoder: bool = False  # one backbone for all cameras instead of one each
    embedding_dim: int = 128  # R: backbone -> ReLU -> Linear -> embedding_dim, L2-normalised
    dynamics_hidden: list[int] = field(default_factory=lambda: [128, 128])  # F: [z, a] -> MLP -> embedding_dim
    gripper_hidden: int = 64  # the open/close classifier on R's backbone features (0: a linear head)
    # the action bank: k-means centres of the data's end-effector motion directions (unit vectors), plus a
    # "stay" entry (zero motion) for steps where the arm holds still (grasping, releasing)
    n_directions: int = 26
    stay_action: bool = True
    # similarities are divided by it before the cross-entropy. The paper uses 1 (plain cosine, from pretrained
    # R3M); trained from scratch on a CPU budget, 1 let the embeddings collapse (the distance loss stayed at
    # log 27 for 1000 steps on lift, the dynamics loss went to 0), 0.1 learns
    temperature: float = 0.1
    frame_stride: int = 1  # the "next" frame is t + frame_stride (the paper subsamples video by 5)
    min_motion: float = 0.001  # end-effector motion (m per stride) below which a step counts as "stay"
    # proprio elements holding the end-effector position (metres; both envs: the first three)
    position_dims: list[int] = field(default_factory=lambda: [0, 1, 2])
    # acting: the action elements that move the end effector along the chosen direction, and by how much
    # (action units; null: the demonstrations' RMS translation, from the action statistics)
    translation_dims: list[int] = field(default_factory=lambda: [0, 1, 2])
    step: float | None = None
    gripper_dim: int | None = -1  # the action element of the gripper (+1 close, -1 open); null: no gripper
    # train without the stored actions: motion and gripper labels from proprio alone (action-free video)
    action_free: bool = False
    # action_free: proprio elements of the gripper opening (null: franka's two fingers or Meta-World's opening,
    # told apart by the proprio width) and the opening fraction below which the gripper counts as closed; the
    # label is read gripper_lookahead steps ahead, so the classifier closes as the demonstrator started to
    gripper_proprio_dims: list[int] | None = None
    open_fraction: float = 0.8
    gripper_lookahead: int = 3
    dynamics_weight: float = 1.0  # loss = distance + dynamics_weight * dynamics + gripper_weight * gripper
    gripper_weight: float = 1.0
    goals_per_task: int = 16  # final frames of successful training episodes kept per instruction as goals
    search: str = "bank"  # bank: argmax over the bank | cem: cross-entropy search over continuous directions
    cem_samples: int = 64
    cem_iterations: int = 3
    cem_elites: int = 8

    CHECKS: ClassVar = {
        **PolicyConfig.CHECKS, "embedding_dim": at_least(2), "dynamics_hidden": non_empty(),
        "gripper_hidden": at_least(0), "n_directions": at_least(2), "temperature": between(1e-4, 100),
        "frame_stride": at_least(1), "min_motion": at_least(0), "position_dims": non_empty(),
        "translation_dims": non_empty(), "step": between(0, 1), "open_fraction": between(0, 1),
        "gripper_lookahead": at_least(0), "dynamics_weight": at_least(0), "gripper_weight": at_least(0),
        "goals_per_task": at_least(1), "search": one_of("bank", "cem"), "cem_samples": at_least(2),
        "cem_iterations": at_least(1), "cem_elites": at_least(1),
    }  # fmt: skip

    @classmethod
    def tiny(cls) -> PlannerConfig:
        """A tiny cnn backbone, 16-d embeddings, 6 directions."""
        return cls(
            encoder={"name": "cnn", "channels": [8, 8], "strides": [2, 2], "dim": 16, "color_jitter": 0.2},
            embedding_dim=16, dynamics_hidden=[16], gripper_hidden=8, n_directions=6, goals_per_task=2,
        )  # fmt: skip
