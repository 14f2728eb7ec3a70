"""The planner's action side, independent of images: end-effector motion directions from proprio, the bank of
candidate directions (k-means over the data's directions), the bank entry nearest a true motion (k*), gripper
labels without actions, and the continuous search (CEM) that can replace the bank."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F


def motion_directions(positions: torch.Tensor, min_motion: float) -> tuple[torch.Tensor, torch.Tensor]:
    """End-effector positions (B, 2, 3) at t and t + stride -> (unit directions (B, 3), moving (B,) bool);
    directions of steps that move less than ``min_motion`` are zero ("stay")."""
    motion = positions[:, 1] - positions[:, 0]
    norm = motion.norm(dim=-1)
    moving = norm > min_motion
    directions = torch.where(moving[:, None], motion / norm.clamp(min=1e-12)[:, None], torch.zeros_like(motion))
    return directions, moving


def nearest_entry(directions: torch.Tensor, moving: torch.Tensor, bank: torch.Tensor, stay: bool) -> torch.Tensor:
    """k*: per row, the bank entry closest to the true direction (unit vectors: the largest dot product); the
    stay entry (the bank's last row, zero) for rows that do not move when ``stay``. ``bank``: (K [+1], 3)."""
    n_directions = bank.shape[0] - (1 if stay else 0)
    nearest = (directions @ bank[:n_directions].T).argmax(-1)
    if stay:
        nearest = torch.where(moving, nearest, torch.full_like(nearest, n_directions))
    return nearest


def episode_directions(
    positions: np.ndarray, episode_ends: np.ndarray, episodes: Sequence[int], stride: int, min_motion: float
) -> np.ndarray:
    """Unit motion directions (N, 3) of every moving step t -> t + stride inside the given episodes of a store
    (``positions``: (n_steps, 3), all rows; ``episode_ends``: cumulative lengths)."""
    starts = np.concatenate([[0], episode_ends[:-1]])
    parts = []
    for e in episodes:
        p = positions[starts[e] : episode_ends[e]]
        if len(p) > stride:
            parts.append(p[stride:] - p[:-stride])
    if not parts:
        return np.zeros((0, 3))
    motion = np.concatenate(parts).astype(np.float64)
    norm = np.linalg.norm(motion, axis=-1)
    return motion[norm > min_motion] / norm[norm > min_motion, None]


def fit_bank(directions: np.ndarray, n_directions: int, seed: int = 0, max_samples: int = 20000) -> np.ndarray:
    """``n_directions`` unit vectors summarising ``directions`` (N, 3): spherical k-means (scipy's k-means++
    seeding and Lloyd iterations on the unit vectors, centres renormalised), deterministic for a seed."""
    from scipy.cluster.vq import kmeans2

    if len(directions) < n_directions:
        raise ValueError(
            f"the data holds {len(directions)} moving steps, fewer than policy.n_directions={n_directions}: "
            "collect more episodes, lower policy.n_directions or policy.min_motion"
        )
    rng = np.random.default_rng(seed)
    if len(directions) > max_samples:
        directions = directions[rng.choice(len(directions), max_samples, replace=False)]
    centres, _ = kmeans2(directions, n_directions, minit="++", seed=rng)
    norms = np.linalg.norm(centres, axis=-1, keepdims=True)
    empty = norms[:, 0] < 1e-6  # a centre of opposite directions: replace it by a data direction
    if empty.any():
        centres[empty] = directions[rng.choice(len(directions), int(empty.sum()), replace=False)]
        norms = np.linalg.norm(centres, axis=-1, keepdims=True)
    return (centres / norms).astype(np.float32)


def gripper_closed_from_opening(opening: torch.Tensor, reference: float, open_fraction: float) -> torch.Tensor:
    """Action-free gripper labels: closed where the opening (the summed magnitudes of the gripper's proprio
    elements) is below ``open_fraction`` of the data's widest ``reference``."""
    return opening < open_fraction * reference


def cem_directions(
    score: Callable[[torch.Tensor], torch.Tensor],
    start: torch.Tensor,
    samples: int,
    iterations: int,
    elites: int,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy search over unit directions: ``score`` maps (B, N, 3) unit directions to (B, N) scores;
    ``start`` (B, 3) is the initial mean (the bank's best). Returns (best directions (B, 3), their scores (B,)).
    Seeded, so the same observation gives the same action."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    mean, std = start, torch.full_like(start, 0.5)
    best, best_score = start, score(start[:, None])[:, 0]
    for _ in range(iterations):
        noise = torch.randn((*start.shape[:1], samples, 3), generator=generator).to(start.device)
        candidates = F.normalize(mean[:, None] + std[:, None] * noise, dim=-1)
        scores = score(candidates)
        top = scores.topk(min(elites, samples), dim=-1)
        elite = candidates.gather(1, top.indices[..., None].expand(-1, -1, 3))
        better = top.values[:, 0] > best_score
        best = torch.where(better[:, None], elite[:, 0], best)
        best_score = torch.where(better, top.values[:, 0], best_score)
        mean, std = F.normalize(elite.mean(1), dim=-1), elite.std(1).clamp(min=0.02)
    return best, best_score
