"""Episodes and preference queries as batches for the reward models, and what they are judged by.

:class:`EpisodeBank` holds the episodes a run touches: every ``frame_stride``-th frame (and the last) of one camera,
as uint8 frames or, for a frozen encoder, as backbone features computed once. :func:`query_batches` draws training
batches whose order depends only on (seed, step), so a resumed run sees the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from scipy.stats import spearmanr

from embodied.datasets.preferences import Preferences


def frame_indices(length: int, stride: int) -> np.ndarray:
    """Every ``stride``-th step of an episode, always including its last."""
    picks = np.arange(0, length, stride)
    return picks if picks[-1] == length - 1 else np.append(picks, length - 1)


class EpisodeBank:
    """Per-episode tensors (frames or features) of one store's camera; see the module docstring."""

    def __init__(self, store, camera: str, stride: int, episodes, progress: str | None = None):
        from tqdm.auto import tqdm

        self.store, self.camera, self.stride = store, camera, stride
        ends = store.episode_ends
        starts = np.concatenate([[0], ends[:-1]])
        self.items: dict[int, torch.Tensor] = {}
        self.steps: dict[int, np.ndarray] = {}  # which steps of each episode (relative to its start)
        for e in tqdm(sorted(set(int(e) for e in episodes)), desc=progress, disable=progress is None, unit="ep"):
            picks = frame_indices(int(ends[e] - starts[e]), stride)
            self.steps[e] = picks
            self.items[e] = torch.from_numpy(store.take(camera, starts[e] + picks))

    def encode(self, model, progress: str | None = None) -> None:
        """Replaces frames by the model's backbone features (frozen encoders)."""
        from tqdm.auto import tqdm

        for e in tqdm(list(self.items), desc=progress, disable=progress is None, unit="ep"):
            if self.items[e].dtype == torch.uint8:
                self.items[e] = model.backbone_features(self.items[e]).cpu()

    def batch(self, episodes: np.ndarray, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Episodes (..., ) -> padded ``x`` (..., T, ...) and ``mask`` (..., T) on ``device``."""
        flat = episodes.reshape(-1)
        items = [self.items[int(e)] for e in flat]
        length = max(len(i) for i in items)
        x = torch.zeros(len(items), length, *items[0].shape[1:], dtype=items[0].dtype)
        mask = torch.zeros(len(items), length, dtype=torch.bool)
        for k, item in enumerate(items):
            x[k, : len(item)], mask[k, : len(item)] = item, True
        shape = episodes.shape
        return x.reshape(*shape, *x.shape[1:]).to(device), mask.reshape(*shape, length).to(device)


def query_batch(bank: EpisodeBank, prefs: Preferences, rows: np.ndarray, device) -> dict:
    """The batch of preference rows ``rows``: x, mask (B, K, T[, ...]), ranks (B, K) float."""
    episodes = prefs.episodes[rows]
    ranks = prefs.ranking[rows].astype(np.float32)
    if (episodes[:, 2] < 0).all():  # pairs only
        episodes, ranks = episodes[:, :2], ranks[:, :2]
    fill = np.where(episodes < 0, episodes.max(), episodes)  # an unused slot repeats a real episode (rank -1)
    x, mask = bank.batch(fill, device)
    return {"x": x, "mask": mask, "ranks": torch.from_numpy(ranks).to(device)}


def query_batches(bank, prefs: Preferences, batch_size: int, seed: int, device):
    """``batches(start_step)`` for the Trainer: batch s holds rows drawn with rng (seed, s)."""

    def batches(start_step: int) -> Iterator[dict]:
        step = start_step
        while True:
            rng = np.random.default_rng([seed, step])
            rows = rng.choice(len(prefs), batch_size, replace=len(prefs) < batch_size)
            yield query_batch(bank, prefs, rows, device)
            step += 1

    return batches


@torch.no_grad()
def episode_rewards(model, bank: EpisodeBank, episodes, batch_size: int = 32) -> dict[int, np.ndarray]:
    """Per-frame learned rewards of each episode (at the bank's frames), in eval mode (no augmentation)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    episodes = [int(e) for e in episodes]
    out = {}
    for i in range(0, len(episodes), batch_size):
        chunk = np.asarray(episodes[i : i + batch_size])
        x, mask = bank.batch(chunk, device)
        rewards = model.frame_rewards(x, mask).cpu().numpy()
        for k, e in enumerate(chunk):
            out[int(e)] = rewards[k, : int(mask[k].sum())]
    model.train(was_training)
    return out


def store_step_rewards(model, store, camera: str, batch_size: int = 32, progress: bool = False):
    """Every episode of ``store`` scored by ``model`` through ``camera``: (per-step rewards of each episode, the
    matched frames' rewards linearly interpolated to every step; the bank; the matched frames' rewards)."""
    episodes = np.arange(store.n_episodes)
    bank = EpisodeBank(store, camera, model.config.frame_stride, episodes, "load episodes" if progress else None)
    if model.caches_features:
        bank.encode(model, "encode frames" if progress else None)
    rewards = episode_rewards(model, bank, episodes, batch_size)
    ends = store.episode_ends
    starts = np.concatenate([[0], ends[:-1]])
    per_step = [np.interp(np.arange(end - start), bank.steps[e], rewards[e])
                for e, (start, end) in enumerate(zip(starts, ends))]  # fmt: skip
    return per_step, bank, rewards


def preference_accuracy(returns: dict[int, float], prefs: Preferences) -> float:
    """The fraction of strictly ordered episode pairs in ``prefs`` whose returns order them the same way."""
    right = total = 0
    for episodes, ranks in zip(prefs.episodes, prefs.ranking):
        for i in range(3):
            for j in range(i + 1, 3):
                if episodes[i] < 0 or episodes[j] < 0 or ranks[i] == ranks[j]:
                    continue
                total += 1
                right += (returns[int(episodes[i])] > returns[int(episodes[j])]) == (ranks[i] < ranks[j])
    return right / total if total else float("nan")


def reward_correlations(rewards: dict[int, np.ndarray], bank: EpisodeBank, true_cost_key: str) -> dict:
    """Spearman correlations of learned and true rewards (true reward = minus the per-step preference cost): pooled
    over every matched frame of the episodes, and of episode returns."""
    learned, true, returns, true_returns = [], [], [], []
    ends = bank.store.episode_ends
    starts = np.concatenate([[0], ends[:-1]])
    for e, r in rewards.items():
        cost = bank.store.take(true_cost_key, starts[e] + bank.steps[e]).astype(np.float64)
        learned.append(r)
        true.append(-cost)
        returns.append(float(r.sum()))
        true_returns.append(-float(cost.sum()))
    per_step = spearmanr(np.concatenate(learned), np.concatenate(true)).statistic
    per_episode = spearmanr(returns, true_returns).statistic if len(returns) > 2 else float("nan")
    return {"spearman_step": float(per_step), "spearman_episode": float(per_episode)}
