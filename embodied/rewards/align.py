"""`embodied reward align`: a visual reward learned from a store's preference table, through the Trainer.

RAPL (``reward.method=rapl``): the encoder's head is aligned so that, with each triplet's best episode as anchor, the
OT cost to the better of the other two is the lower (Bradley-Terry over negative OT costs, equal answers pulled to
0.5). RLHF (``rlhf``): a per-frame scalar head, Bradley-Terry on summed rewards. ``ot``: nothing to train (the frozen
encoder's OT reward, saved the same way for comparison). A share of the answers is held out; the checkpoint kept is
the one ordering held-out pairs best by its deployed reward (returns of the episodes, RAPL's matched against the
preferred demos). The output loads with ``reward=DIR`` / :func:`embodied.rewards.checkpoint.load_reward`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from embodied.configs.checks import at_least, between
from embodied.rewards.config import RewardConfig
from embodied.training.optim import OptimConfig


@dataclass
class AlignConfig:
    """What `embodied reward align` does."""

    policy: Any = None  # only policy.encoder is read: the `encoder` group lands there in every job
    reward: RewardConfig = field(default_factory=RewardConfig)  # method, head, OT settings (its encoder: the group's)
    dataset: str | None = None  # the store holding the rollouts and their preference table
    demos: str | None = None  # a store of preferred demonstrations (rapl, ot); its first demo_episodes are used
    demo_episodes: int = 10
    queries: int | None = None  # use only the first N answers (null: all)
    val_fraction: float = 0.2  # answers held out to pick the best checkpoint
    steps: int = 400  # optimiser steps (the paper: ~50 epochs over 40-150 triplets)
    batch_size: int = 16  # queries per step
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, weight_decay=0.0, warmup_steps=0))
    eval_every: int = 25  # steps between held-out evaluations
    checkpoint_every: int = 200  # and at the last step (and on Ctrl-C or SIGTERM)
    seed: int = 0  # seeds the head, the split and every batch
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    out: str | None = None  # default <run_dir>/reward
    resume: bool = False  # continue <run_dir>/checkpoints/last (needs run_dir=)
    run_dir: str | None = None  # default outputs/reward_align/<time>
    progress: bool = True
    plugins: list[str] = field(default_factory=list)

    CHECKS: ClassVar = {
        "demo_episodes": at_least(1), "queries": at_least(1), "val_fraction": between(0, 0.9), "steps": at_least(1),
        "batch_size": at_least(1), "eval_every": at_least(1), "checkpoint_every": at_least(1),
    }  # fmt: skip


def reward_config(job: AlignConfig) -> RewardConfig:
    """The reward config with the encoder group's config (``encoder=NAME``, at policy.encoder) filled in."""
    from dataclasses import replace

    reward = job.reward if isinstance(job.reward, RewardConfig) else RewardConfig(**dict(job.reward))
    encoder = dict((job.policy or {}).get("encoder") or reward.encoder)
    return replace(reward, encoder=encoder)


def split_preferences(prefs, val_fraction: float, seed: int):
    """(train, held-out) answers, split by query (all answers to the same episodes fall on one side, whoever gave
    them and in whatever order they were shown): a seeded shuffle; nothing is held out below 5 queries."""
    from embodied.datasets.preferences import query_key

    keys = [query_key(row) for row in prefs.episodes]
    unique = sorted(set(keys))
    n_val = math.ceil(val_fraction * len(unique)) if len(unique) >= 5 else 0
    order = np.random.default_rng([seed, 1]).permutation(len(unique))
    held = {unique[i] for i in order[:n_val]}
    is_held = np.array([k in held for k in keys], dtype=bool)
    return prefs.subset(~is_held), prefs.subset(is_held)


def align(job: AlignConfig, run_dir: Path) -> Path:
    """Learns the reward; returns the checkpoint directory."""

    from embodied.datasets.preferences import read_preferences
    from embodied.datasets.store import EpisodeStore
    from embodied.rewards.checkpoint import save_reward
    from embodied.rewards.model import REWARD_METHODS, VisualReward
    from embodied.rewards.queries import EpisodeBank
    from embodied.runtime import resolve_device, seed_everything

    config = reward_config(job)
    if not job.dataset:
        raise ValueError("embodied reward align needs dataset=STORE: rollouts with a preference table "
                         "(`embodied reward simulate dataset=STORE` answers queries)")  # fmt: skip
    store = EpisodeStore(job.dataset)
    prefs = read_preferences(job.dataset)
    if job.queries:
        prefs = prefs.subset(np.arange(min(job.queries, len(prefs))))
    if len(prefs) == 0:
        raise ValueError(f"{job.dataset} has no answered preference queries; answer some with "
                         f"`embodied reward simulate dataset={job.dataset} queries=100`")  # fmt: skip
    method = REWARD_METHODS.get(config.method)
    if method.triplets_only and (prefs.episodes[:, 2] < 0).any():
        triplets = prefs.episodes[:, 2] >= 0
        print(f"reward.method={config.method} learns from triplets: {int((~triplets).sum())} pair answers are left out "
              "(reward.method=rlhf uses them)")  # fmt: skip
        prefs = prefs.subset(triplets)
        if len(prefs) == 0:
            raise ValueError(
                f"{job.dataset} holds only pair answers; reward.method={config.method} needs triplets "
                "(`embodied reward simulate query_size=3`), reward.method=rlhf learns from pairs"
            )
    if method.matches_demos and not job.demos:
        raise ValueError(f"reward.method={config.method} matches rollouts against preferred demos: give demos=STORE")
    camera = config.camera or next((k for k, f in store.features.items() if f.kind == "image"), None)
    if camera is None or camera not in store.features:
        raise ValueError(f"{job.dataset}: no camera {config.camera or ''} to learn a visual reward from")
    train_prefs, val_prefs = split_preferences(prefs, job.val_fraction, job.seed)

    device = resolve_device(job.device)
    seed_everything(job.seed)
    model = VisualReward(config, store.features[camera].shape).to(device)
    used = np.unique(prefs.episodes[prefs.episodes >= 0])
    bank = EpisodeBank(store, camera, config.frame_stride, used, progress="load episodes" if job.progress else None)
    demo_frames = _demo_frames(job, camera, config.frame_stride) if job.demos else []
    if model.caches_features:  # frozen encoder: its features once, then only the head trains
        bank.encode(model, progress="encode frames (frozen encoder)" if job.progress else None)
    demo_inputs = [model.backbone_features(f) if model.caches_features else f for f in demo_frames]
    info = {"camera": camera, "image_shape": list(store.features[camera].shape), "dataset": str(job.dataset),
            "demos": job.demos, "queries": len(prefs), "train_queries": len(train_prefs),
            "held_out_queries": len(val_prefs), "seed": job.seed}  # fmt: skip
    out = Path(job.out) if job.out else Path(run_dir) / "reward"
    best = {"step": 0}
    if method.logits is not None:  # a method with something to train
        best = fit_reward(job, model, bank, train_prefs, val_prefs, demo_inputs, demo_frames, info, run_dir)
    model.set_demos([d.to(device) for d in demo_inputs])
    info["best_step"] = best["step"]
    info["held_out_accuracy"] = held_out_accuracy(model, bank, val_prefs) if len(val_prefs) else None
    save_reward(model, out, demo_frames, info)
    (Path(run_dir) / "summary.json").write_text(json.dumps(info, indent=1))
    return out


def held_out_accuracy(model, bank, prefs) -> float:
    """How often the deployed reward's episode returns order held-out answers' pairs as the person did."""

    from embodied.rewards.queries import episode_rewards, preference_accuracy

    rewards = episode_rewards(model, bank, np.unique(prefs.episodes[prefs.episodes >= 0]))
    return float(preference_accuracy({e: float(r.sum()) for e, r in rewards.items()}, prefs))


def _demo_frames(job: AlignConfig, camera: str, stride: int):
    from embodied.datasets.store import EpisodeStore
    from embodied.rewards.queries import EpisodeBank

    demos = EpisodeStore(job.demos)
    if camera not in demos.features:
        raise ValueError(f"demos={job.demos} has no {camera!r} (the rollouts' camera)")
    count = min(job.demo_episodes, demos.n_episodes)
    bank = EpisodeBank(demos, camera, stride, range(count))
    return [bank.items[e] for e in range(count)]


def fit_reward(
    job: AlignConfig, model, bank, train_prefs, val_prefs, demo_inputs, demo_frames, info: dict, run_dir
) -> dict:
    """Trains ``model`` through the Trainer on batches of ``train_prefs`` (episodes from ``bank``), measuring held-out
    accuracy every ``eval_every`` steps and restoring the best weights; returns {"accuracy", "step"} of the best.
    ``demo_inputs``: the demos as the bank holds episodes (features or frames); ``demo_frames``: as saved."""

    from safetensors.torch import load_file, save_file

    from embodied.rewards.checkpoint import save_reward
    from embodied.rewards.queries import query_batches
    from embodied.training.trainer import Trainer, TrainerConfig

    run_dir = Path(run_dir)
    best_path, best_info = run_dir / "best.safetensors", run_dir / "best.json"
    best = {"accuracy": -1.0, "step": 0}
    if job.resume and best_info.exists():
        best = json.loads(best_info.read_text())

    device = next(model.parameters()).device

    def evaluate(step: int, metrics: dict):
        if not len(val_prefs) or (step % job.eval_every and step != job.steps):
            return None
        if demo_inputs:
            model.set_demos([d.to(device) for d in demo_inputs])
        accuracy = float(held_out_accuracy(model, bank, val_prefs))
        if accuracy > best["accuracy"]:
            best.update(accuracy=accuracy, step=step)
            partial = best_path.with_suffix(".partial")  # then renamed: a kill never leaves a truncated file
            save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, partial)
            os.replace(partial, best_path)
            best_info.write_text(json.dumps(best))  # after the weights: a kill between leaves the older record
        return {"held_out": {"accuracy": accuracy, "best_accuracy": best["accuracy"]}}

    config = TrainerConfig(steps=job.steps, batch_size=job.batch_size, optim=job.optim, log_every=job.eval_every,
                           checkpoint_every=job.checkpoint_every, resume=job.resume, progress=job.progress,
                           split="align")  # fmt: skip
    trainer = Trainer(
        model, query_batches(bank, train_prefs, job.batch_size, job.seed, device), config, run_dir,
        export=lambda m, directory: save_reward(m, directory, demo_frames, info, manifest=False),
        resume_check={"reward": asdict(model.config), "dataset": str(job.dataset), "queries": info["queries"],
                      "batch_size": job.batch_size, "seed": job.seed},
        callbacks=[evaluate],
        diverged_hint="; or raise reward.temperature",
    )  # fmt: skip
    trainer.fit()
    if best_info.exists():
        model.load_state_dict(load_file(best_path))
    return best
