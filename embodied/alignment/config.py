"""What `embodied align` does: which policy, which reward, which method, and how many rounds of how much."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from embodied.configs.checks import Rule, at_least, between, positive
from embodied.training.optim import OptimConfig


def _registered_method(name: str) -> bool:
    from embodied.alignment.methods import ALIGN_METHODS

    return name in ALIGN_METHODS


@dataclass
class PolicyAlignConfig:
    """`embodied align checkpoint=POLICY reward=REWARD`: rounds of (roll out, score, update), then before/after."""

    checkpoint: str | None = None  # the policy to align (a `embodied train` checkpoint directory)
    # a reward checkpoint (`embodied reward align`: RAPL, RLHF or frozen OT), or true_cost: the env's hidden
    # preference cost itself, an oracle to compare learned rewards with
    reward: str | None = None
    env: Any = None  # null: the env the checkpoint was trained in (env=... env.task=... to choose another)
    method: str = "dpo"  # dpo | weighted_bc | filtered_bc (embodied.alignment.methods.ALIGN_METHODS)
    rounds: int = 3  # collect -> score -> update, this many times
    episodes_per_round: int = 16  # rollouts of the current policy scored each round
    steps_per_round: int = 100  # optimiser steps per round
    batch_size: int = 16  # pairs (dpo) or windows (bc) per step
    # dpo: the inverse strength of the reference constraint; with Diffusion-DPO's per-chunk mean denoising errors a
    # margin of 0.005 already gives a logit of 5, so the loss saturates before the policy drifts far (measured on
    # lift_zone: beta 100 / lr 1e-4 kept nothing of a 0.87-success policy after one round; 1000 / 1e-5 kept 0.87)
    beta: float = 1000.0
    sft_weight: float = 0.0  # dpo: + this times the policy's imitation loss on the preferred chunks (RPO)
    top_fraction: float = 0.5  # dpo: pairs the best share of rollouts with the worst share; filtered_bc: share kept
    temperature: float = 0.5  # weighted_bc: weights softmax(standardised return / temperature)
    winners_succeed: bool = True  # preferred (dpo) or kept (filtered_bc) rollouts must have succeeded at the task
    max_pairs: int = 256  # dpo: pairs per round, at most
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(lr=1e-5, weight_decay=0.0, warmup_steps=0, schedule="constant")
    )
    eval_episodes: int = 20  # before/after rollouts on evaluation seeds (the same scenes for both)
    videos: int = 2  # before/after videos side by side, of the first N evaluation episodes
    # an episode satisfies the preference when its total hidden cost is at most this (franka lift_zone: 0 for the
    # preferred behaviour, ~2 for a neutral one, ~14 for a detour over the zone)
    preference_threshold: float = 1.0
    max_episode_steps: int | None = None  # null: the env's own limit
    num_envs: int = 2  # env processes for rollouts
    seed: int = 0  # seeds rollouts (round k's episodes use fixed seeds), pairs and batches; < 900 (seed ranges)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    resume: bool = False  # continue run_dir= where it stopped (a round's rollouts, its training, the evaluation)
    run_dir: str | None = None  # default outputs/align/<time>
    progress: bool = True
    plugins: list[str] = field(default_factory=list)

    CHECKS: ClassVar = {
        "method": Rule("a registered alignment method: dpo, weighted_bc, filtered_bc", _registered_method),
        "rounds": at_least(1), "episodes_per_round": at_least(2), "steps_per_round": at_least(1),
        "batch_size": at_least(1), "beta": positive(), "sft_weight": at_least(0), "top_fraction": between(0, 1),
        "temperature": positive(), "max_pairs": at_least(1), "eval_episodes": at_least(1), "videos": at_least(0),
        "preference_threshold": at_least(0), "max_episode_steps": at_least(1), "num_envs": at_least(1),
        "seed": between(0, 899),
    }  # fmt: skip

    def settings(self) -> dict:
        """What a resumed run must share with the run it continues."""
        keys = ("checkpoint", "reward", "env", "method", "episodes_per_round", "steps_per_round", "batch_size", "beta",
                "sft_weight", "top_fraction", "temperature", "winners_succeed", "max_pairs", "seed",
                "max_episode_steps", "optim", "eval_episodes", "preference_threshold")  # fmt: skip
        from dataclasses import asdict

        plain = asdict(self)
        return {k: plain[k] for k in keys}
