"""Distance-based planning in a fine-tuned representation (Manipulate by Seeing; Wang, Dasari et al., ICCV 2023).

No action-regression head: a representation R (a registered encoder, then ReLU -> Linear -> 128-d, L2-normalised)
and a dynamics model F(z, a) (an MLP on [z, a], L2-normalised) are trained on frames of stored episodes, and
acting picks the candidate direction a_k whose predicted next embedding F(R(I_t), a_k) is most similar to the
goal's R(I_goal), then steps a fixed distance along it.

Training, per window (anchor t, a random later goal frame g of the same episode, the frame t + stride):
  - the true motion is the end-effector displacement t -> t + stride from proprio (so action-free video works);
    k* is the bank entry nearest its direction (or "stay" when it barely moves);
  - distance loss: cross-entropy over k of cos(F(R(I_t), a_k), R(I_g)) / temperature, target k*;
  - dynamics loss: ||F(R(I_t), a_true) - R(I_{t+1})||^2;
  - gripper loss: binary cross-entropy of a small classifier on the current image's backbone features (open vs
    close: the action's gripper command, or in action-free mode the gripper opening a few steps ahead).

The goal is an observation input: ``goal/images/<camera>`` (uint8, like the camera) in an observation (or
:meth:`PlannerPolicy.set_goal`) overrides the goal frames kept from training (the final frames of successful
episodes of the same instruction, see :mod:`embodied.policies.planner.goals`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from embodied.features import INSTRUCTION, Feature
from embodied.policies.camera_policy import CameraPolicy
from embodied.policies.planner import bank as actions
from embodied.policies.planner import goals as goal_frames
from embodied.policies.planner.config import PlannerConfig
from embodied.policies.planner.goals import goal_key

# action-free gripper opening: proprio elements by proprio width, for the envs we ship (franka: two finger joints,
# Meta-World: the normalised opening); other data passes policy.gripper_proprio_dims
GRIPPER_PROPRIO = {9: [7, 8], 4: [3]}


class PlannerPolicy(CameraPolicy):
    """Manipulate by Seeing's planner (see the module docstring); built from ``(config, features, stats)``."""

    reads_pooled_features = False  # it trains R itself, on three frames per window

    def __init__(
        self,
        config: PlannerConfig,
        features: Mapping[str, Feature],
        stats: Mapping[str, Mapping],
        checkpoint_dir=None,
    ):
        if config.obs_keys is None:
            config.obs_keys = [k for k, f in features.items() if f.kind == "image"]
        super().__init__(config, features, stats, checkpoint_dir)
        if not self.image_keys or self.lowdim_keys:
            raise ValueError(
                f"policy=planner plans in image embeddings: policy.obs_keys must be cameras only, got {self.obs_keys}"
            )
        if "proprio" not in self.features:
            raise KeyError("policy=planner reads the end-effector position from 'proprio'; the dataset has none")
        proprio_dim = int(self.features["proprio"].shape[-1])
        for dims, what in ((config.position_dims, "position_dims"), (config.translation_dims, "translation_dims")):
            if len(dims) != 3:
                raise ValueError(f"policy.{what} must name three elements (x, y, z), got {dims}")
        if max(config.position_dims) >= proprio_dim:
            raise ValueError(f"policy.position_dims {config.position_dims} exceed proprio's {proprio_dim} elements")
        if max(config.translation_dims) >= self.action_dim:
            raise ValueError(f"policy.translation_dims {config.translation_dims} exceed the {self.action_dim}-D action")
        self.gripper_dim = None if config.gripper_dim is None else config.gripper_dim % self.action_dim
        self.gripper_proprio_dims = config.gripper_proprio_dims or GRIPPER_PROPRIO.get(proprio_dim)
        if config.action_free and self.gripper_dim is not None and not self.gripper_proprio_dims:
            raise ValueError(
                f"policy.action_free=true reads the gripper from proprio: pass policy.gripper_proprio_dims (the "
                f"proprio elements of the gripper opening; this proprio has {proprio_dim})"
            )
        self.step = config.step if config.step is not None else self._demonstration_step()
        width = sum(self.camera_encoder(k).pooled_dim for k in self.image_keys)
        self.projection = nn.Sequential(nn.ReLU(), nn.Linear(width, config.embedding_dim))
        layers: list[nn.Module] = []
        in_dim = config.embedding_dim + 3
        for hidden in config.dynamics_hidden:
            layers += [nn.Linear(in_dim, hidden), nn.ReLU()]
            in_dim = hidden
        self.dynamics = nn.Sequential(*layers, nn.Linear(in_dim, config.embedding_dim))
        if self.gripper_dim is not None:
            hidden = config.gripper_hidden
            self.gripper = (
                nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, 1))
                if hidden
                else nn.Linear(width, 1)
            )
        n_bank = config.n_directions + (1 if config.stay_action else 0)
        self.register_buffer("bank", torch.zeros(n_bank, 3))  # filled by fit_data, restored from checkpoints
        self.goals: dict[str, torch.Tensor] = {}
        self.goal_tasks: list[str] = []
        self._user_goal: dict[str, torch.Tensor] | None = None
        self._goal_cache: dict | None = None
        self.optional_obs_keys = tuple(goal_key(k) for k in self.image_keys)
        saved = goal_frames.load_goals(self.checkpoint_dir) if self.checkpoint_dir is not None else None
        if saved is not None:
            self.goals, self.goal_tasks = saved

    # ------------------------------------------------------------------ data
    def _demonstration_step(self) -> float:
        """The demonstrations' RMS translation per step, in action units (sqrt of sum of mean^2 + std^2)."""
        stats = self.dataset_stats.get("action")
        if not stats:
            raise ValueError("policy.step=null takes the step from the action statistics; this data has none")
        dims = self.config.translation_dims
        rms = math.sqrt(sum(float(stats["mean"][d]) ** 2 + float(stats["std"][d]) ** 2 for d in dims))
        return min(max(rms, 1e-3), 1.0)

    def key_offsets(self) -> dict[str, list[int]]:
        """Each camera at t and t + stride; proprio at t, t + stride (and the gripper lookahead when action-free);
        the action at t (its gripper command) unless action-free."""
        stride = self.config.frame_stride
        offsets: dict[str, list[int]] = {key: [0, stride] for key in self.image_keys}
        offsets["proprio"] = [0, stride] + ([self.config.gripper_lookahead] if self.config.action_free else [])
        if not self.config.action_free and self.gripper_dim is not None:
            offsets["action"] = [0]
        return offsets

    def goal_keys(self) -> dict[str, str]:
        """Each camera again at a random later step of the episode: the goal frame."""
        return {goal_key(key): key for key in self.image_keys}

    def fit_data(self, datasets) -> None:
        """The action bank (k-means of the data's motion directions) and the goal frames kept per instruction."""
        found = []
        for dataset in datasets:
            positions = dataset.store.read("proprio", 0, dataset.store.n_steps)[:, self.config.position_dims]
            found.append(actions.episode_directions(
                positions, dataset.store.episode_ends, dataset.episodes, self.config.frame_stride,
                self.config.min_motion,
            ))  # fmt: skip
        directions = actions.fit_bank(np.concatenate(found), self.config.n_directions)
        self.bank.zero_()
        self.bank[: self.config.n_directions] = torch.from_numpy(directions).to(self.bank.device)
        self.goals, self.goal_tasks = goal_frames.collect_goals(datasets, self.image_keys, self.config.goals_per_task)
        self._goal_cache = None

    def save_extra_files(self, directory) -> None:
        """goals.safetensors + goals.json beside the weights."""
        if self.goals:
            goal_frames.save_goals(directory, self.goals, self.goal_tasks)

    # ------------------------------------------------------------------ model
    def represent(self, images: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """{camera key: uint8 (N, H, W, 3)} -> (backbone features (N, width), R's embeddings (N, embedding_dim))."""
        features = torch.cat([self.camera_encoder(key)(images[key]).pooled for key in self.image_keys], -1)
        return features, F.normalize(self.projection(features), dim=-1)

    def predict_next(self, z: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        """F: embeddings (..., D) and directions (..., 3) -> predicted next embeddings (..., D), normalised."""
        return F.normalize(self.dynamics(torch.cat([z, directions], -1)), dim=-1)

    def similarities(self, z: torch.Tensor, directions: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """cos(F(z, a_k), goal) for (B, D) embeddings, (B or 1, K, 3) directions and (B, D) goals -> (B, K)."""
        expanded = z[:, None].expand(-1, directions.shape[1], -1)
        return (self.predict_next(expanded, directions.expand(z.shape[0], -1, -1)) * goal[:, None]).sum(-1)

    def compute_loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """Distance + dynamics (+ gripper) losses of the module docstring, padded frames left out."""
        device = self.device
        stride_pad = batch["proprio_is_pad"][:, 1].to(device)
        goal_pad = batch[f"{goal_key(self.image_keys[0])}_is_pad"][:, 0].to(device)
        images = {
            key: torch.cat([batch[key][:, 0], batch[key][:, 1], batch[goal_key(key)][:, 0]]).to(device)
            for key in self.image_keys
        }
        features, z = self.represent(images)
        size = stride_pad.shape[0]
        features_t, (z_t, z_next, z_goal) = features[:size], z.split(size)
        proprio = batch["proprio"].to(device).float()
        directions, moving = actions.motion_directions(
            proprio[:, :2][..., self.config.position_dims], self.config.min_motion
        )
        target = actions.nearest_entry(directions, moving, self.bank, self.config.stay_action)
        logits = self.similarities(z_t, self.bank[None], z_goal) / self.config.temperature
        valid = ~stride_pad & ~goal_pad & (moving | self.config.stay_action)
        distance = _masked(F.cross_entropy(logits, target, reduction="none"), valid)
        dynamics = _masked((self.predict_next(z_t, directions) - z_next).square().sum(-1), ~stride_pad)
        loss = distance + self.config.dynamics_weight * dynamics
        picked = logits.argmax(-1)
        metrics = {
            "distance": distance.item(),
            "dynamics": dynamics.item(),
            "top1": _masked((picked == target).float(), valid).item(),
            # the paper's "translation direction similarity": cos(picked bank direction, true motion), moving steps
            "direction_cos": _masked((self.bank[picked] * directions).sum(-1), valid & moving).item(),
        }
        if self.gripper_dim is not None:
            closed = self.gripper_labels(batch).to(device)
            gripper = F.binary_cross_entropy_with_logits(self.gripper(features_t)[:, 0], closed.float())
            loss = loss + self.config.gripper_weight * gripper
            metrics["gripper"] = gripper.item()
        return loss, metrics

    def gripper_labels(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Closed (True) or open per window: the action's gripper command at t, or action-free, the gripper
        opening ``gripper_lookahead`` steps ahead below ``open_fraction`` of the data's widest."""
        if not self.config.action_free:
            return batch["action"][:, 0, self.gripper_dim] > 0
        dims = self.gripper_proprio_dims
        opening = batch["proprio"][:, 2, dims].float().abs().sum(-1)
        stats = self.dataset_stats["proprio"]
        reference = sum(max(abs(float(stats["min"][d])), abs(float(stats["max"][d]))) for d in dims)
        return actions.gripper_closed_from_opening(opening, reference, self.config.open_fraction)

    # ------------------------------------------------------------------ acting
    def set_goal(self, images: Mapping[str, Any] | None) -> None:
        """A goal image per camera (``{image key: uint8 (H, W, 3)}``) used for every call until cleared (None)."""
        if images is None:
            self._user_goal = None
            return
        goal = {key: torch.as_tensor(np.asarray(images[key])) for key in self.image_keys}
        self._user_goal = {key: value[None] if value.ndim == 3 else value for key, value in goal.items()}

    def prepare_obs(self, obs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """The cameras as every policy; a goal image given with the observation passes through."""
        out = super().prepare_obs(obs)
        for key in self.image_keys:
            if goal_key(key) in obs:
                goal = torch.as_tensor(obs[goal_key(key)]).to(self.device)
                out[goal_key(key)] = goal[:, -1] if goal.ndim == 5 else goal
        return out

    def train(self, mode: bool = True):
        self._goal_cache = None  # goal embeddings depend on the weights
        return super().train(mode)

    def reset(self) -> None:
        self._goal_cache = None

    def goal_embeddings(self, obs: Mapping[str, Any], batch: int) -> torch.Tensor:
        """(B, D): R of the observation's goal image, of :meth:`set_goal`'s, or the normalised mean embedding of
        the kept goal frames of each row's instruction."""
        given = {k: obs[goal_key(k)] for k in self.image_keys if goal_key(k) in obs} or self._user_goal
        if given:
            goal = self.represent({k: torch.as_tensor(given[k]).to(self.device) for k in self.image_keys})[1]
            return goal.expand(batch, -1) if goal.shape[0] == 1 else goal
        if not self.goal_tasks:
            raise ValueError(
                "the planner has no goal: train it with `embodied train policy=planner` (it keeps goal frames), or "
                "pass goal/images/<camera> with the observation or call policy.set_goal(images)"
            )
        if self._goal_cache is None:
            self._goal_cache = {"z": self.represent({k: v.to(self.device) for k, v in self.goals.items()})[1]}
        z = self._goal_cache["z"]
        rows = goal_frames.goal_indices(self.goal_tasks, obs.get(INSTRUCTION), batch)
        return torch.stack([F.normalize(z[r].mean(0), dim=-1) for r in rows])

    def plan(self, z: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """Embeddings (B, D) and goal embeddings (B, D) -> the direction to move (B, 3): the bank entry whose
        predicted next embedding is most similar to the goal (zero for "stay"), refined by CEM when
        ``search=cem`` (kept only where it scores at least as well)."""
        scores = self.similarities(z, self.bank[None], goal)
        best = scores.argmax(-1)
        direction = self.bank[best]
        if self.config.search == "cem":
            n = self.config.n_directions
            start = self.bank[:n][scores[:, :n].argmax(-1)]
            found, found_score = actions.cem_directions(
                lambda d: self.similarities(z, d, goal), start, self.config.cem_samples, self.config.cem_iterations,
                self.config.cem_elites,
            )  # fmt: skip
            better = found_score >= scores.gather(1, best[:, None])[:, 0]
            direction = torch.where(better[:, None], found, direction)
        return direction

    def predict_chunk(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The raw action (B, horizon, action_dim): ``step`` along :meth:`plan`'s direction, rotation zero, the
        gripper from the classifier."""
        features, z = self.represent({key: obs[key][:, -1] for key in self.image_keys})
        direction = self.plan(z, self.goal_embeddings(obs, z.shape[0]))
        action = torch.zeros(z.shape[0], self.action_dim, device=z.device)
        action[:, self.config.translation_dims] = self.step * direction
        if self.gripper_dim is not None:
            close = self.gripper(features)[:, 0] > 0
            action[:, self.gripper_dim] = torch.where(close, 1.0, -1.0)
        return action[:, None].expand(-1, self.config.horizon, -1)

    def unnormalize_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """The planner builds raw env actions itself (a step along a direction, a gripper command)."""
        return actions


def _masked(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` (zero when nothing is valid)."""
    mask = mask.float()
    return (values * mask).sum() / mask.sum().clamp(min=1)
