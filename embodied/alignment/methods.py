"""How scored rollouts update a policy: the registered alignment methods (``method=``), each an objective the one
Trainer fits and the batches it fits on.

- ``dpo``: pairs of rollouts, the reward's preferred one first (:func:`preference_pairs`). A sample is the window at
  the same step of both episodes (the same stage of the task); the loss is DPO's,
  ``-log sigmoid(beta * ((l(w) - l_ref(w)) - (l(l) - l_ref(l))))`` with ``l`` the policy's
  :meth:`~embodied.policies.base.Policy.chunk_log_likelihood` (for the diffusion policy, Diffusion-DPO's denoising
  surrogate at a shared diffusion step and noise). The frozen reference — the policy alignment started from — is the
  constraint: the loss only rewards moving *relative* to it, is log 2 where the policy equals it, and saturates
  instead of driving the likelihood of preferred chunks up without bound. ``sft_weight`` adds the policy's own
  imitation loss on the preferred chunks (RPO, Pang et al. 2024), a pull toward the data.
- ``weighted_bc``: the policy's own imitation loss on windows drawn from each rollout with weight
  ``softmax(z / temperature)``, ``z`` its standardised return (reward-weighted regression).
- ``filtered_bc``: the same on the top ``top_fraction`` of rollouts (successful ones only with ``winners_succeed``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from embodied.registry import Registry

PREFERRED, DISPREFERRED = "preferred.", "dispreferred."


class NoTrainingData(ValueError):
    """A round's rollouts give the method nothing to learn from (e.g. none succeeded); the round leaves the policy
    as it is."""


@dataclass
class ScoredRollouts:
    """One round's rollouts as the methods see them."""

    returns: np.ndarray  # (E,) each episode's return under the alignment reward
    success: np.ndarray  # (E,) bool, the env's task success
    starts: np.ndarray  # (E,) first store row of each episode
    lengths: np.ndarray  # (E,) steps


def preference_pairs(rollouts: ScoredRollouts, top_fraction: float, winners_succeed: bool, max_pairs: int,
                     seed: int) -> np.ndarray:  # fmt: skip
    """(P, 2) episode pairs (preferred, dispreferred): every one of the best ``top_fraction`` of the rollouts (by
    return; only successful ones when ``winners_succeed``) against every one of the worst ``top_fraction``, where
    the first's return is strictly higher; at most ``max_pairs`` of them (a seeded draw)."""
    returns = np.asarray(rollouts.returns, dtype=np.float64)
    n = len(returns)
    k = max(1, min(n // 2, int(round(top_fraction * n))))
    candidates = np.flatnonzero(rollouts.success) if winners_succeed else np.arange(n)
    winners = candidates[np.argsort(-returns[candidates], kind="stable")][:k]
    rest = np.setdiff1d(np.arange(n), winners)
    losers = rest[np.argsort(returns[rest], kind="stable")][:k]
    pairs = np.array([(w, lo) for w in winners for lo in losers if returns[w] > returns[lo]], dtype=np.int64)
    pairs = pairs.reshape(-1, 2)
    if len(pairs) > max_pairs:
        pairs = pairs[np.sort(np.random.default_rng([seed, 2**40]).choice(len(pairs), max_pairs, replace=False))]
    return pairs


def kept_episodes(rollouts: ScoredRollouts, top_fraction: float, winners_succeed: bool) -> np.ndarray:
    """filtered_bc's rollouts: the best ``top_fraction`` by return (of the successful ones, with
    ``winners_succeed``)."""
    returns = np.asarray(rollouts.returns, dtype=np.float64)
    candidates = np.flatnonzero(rollouts.success) if winners_succeed else np.arange(len(returns))
    if not len(candidates):
        raise NoTrainingData("no rollout succeeded, so none is kept (winners_succeed=false keeps failed ones)")
    k = max(1, int(round(top_fraction * len(returns))))
    return np.sort(candidates[np.argsort(-returns[candidates], kind="stable")][:k])


def return_weights(rollouts: ScoredRollouts, temperature: float) -> np.ndarray:
    """weighted_bc's episode weights: a softmax of the standardised returns divided by ``temperature``."""
    returns = np.asarray(rollouts.returns, dtype=np.float64)
    z = (returns - returns.mean()) / max(returns.std(), 1e-8)
    weights = np.exp((z - z.max()) / temperature)
    return weights / weights.sum()


class DPOObjective(nn.Module):
    """DPO on paired windows (see the module docstring); only ``policy`` is a registered submodule, so checkpoints
    hold the policy alone and the reference can never receive a gradient."""

    def __init__(self, policy, reference, beta: float, sft_weight: float = 0.0):
        super().__init__()
        self.policy = policy
        self._reference = (reference.eval().requires_grad_(False),)
        self.beta, self.sft_weight = beta, sft_weight

    @property
    def reference(self):
        """The frozen policy alignment started from."""
        return self._reference[0]

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """DPO's loss over the batch's pairs, with the share of pairs the policy already ranks right and the mean
        log-likelihood ratios to the reference."""
        preferred = {k[len(PREFERRED) :]: v for k, v in batch.items() if k.startswith(PREFERRED)}
        dispreferred = {k[len(DISPREFERRED) :]: v for k, v in batch.items() if k.startswith(DISPREFERRED)}
        seed = int(batch["noise_seed"][0])
        self.policy.eval()  # no augmentation or dropout: the policy and its reference score the very same inputs

        def log_ratio(part: dict) -> torch.Tensor:
            with torch.no_grad():
                reference = self.reference.chunk_log_likelihood(part, torch.Generator().manual_seed(seed))
            return self.policy.chunk_log_likelihood(part, torch.Generator().manual_seed(seed)) - reference

        win, lose = log_ratio(preferred), log_ratio(dispreferred)
        margin = win - lose
        loss = -F.logsigmoid(self.beta * margin).mean()
        if self.sft_weight:  # RPO's imitation term on the preferred chunks (a forward-KL pull toward the data)
            loss = loss + self.sft_weight * self.policy.compute_loss(preferred)[0]
        return loss, {"dpo_accuracy": (margin > 0).float().mean().item(), "preferred_log_ratio": win.mean().item(),
                      "dispreferred_log_ratio": lose.mean().item()}  # fmt: skip


class ImitationObjective(nn.Module):
    """The policy's own training loss (weighted / filtered behaviour cloning: the weighting is in the batches)."""

    def __init__(self, policy, reference=None, beta: float = 0.0, sft_weight: float = 0.0):
        super().__init__()
        self.policy = policy

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """The policy's loss (augmentation and dropout on, as in training)."""
        return self.policy.compute_loss(batch)


def pair_batches(dataset, rollouts: ScoredRollouts, pairs: np.ndarray, batch_size: int, seed: int):
    """``batches(start_step)``: batch ``s`` holds pairs drawn with rng (seed, s), each at one step drawn uniformly
    within the shorter episode, as ``preferred.<key>`` / ``dispreferred.<key>`` windows and a ``noise_seed``."""
    if not len(pairs):
        raise NoTrainingData(
            "no preference pairs: no rollout both succeeded (winners_succeed) and scored above another"
        )

    def batches(start_step: int) -> Iterator[dict]:
        step = start_step
        while True:
            rng = np.random.default_rng([seed, step])
            chosen = pairs[rng.integers(0, len(pairs), batch_size)]
            span = np.minimum(rollouts.lengths[chosen[:, 0]], rollouts.lengths[chosen[:, 1]])
            t = np.floor(rng.random(batch_size) * span).astype(np.int64)
            batch = {"noise_seed": torch.full((batch_size,), int(rng.integers(2**31)))}
            for prefix, column in ((PREFERRED, 0), (DISPREFERRED, 1)):
                part = dataset.get_batch(rollouts.starts[chosen[:, column]] + t)
                batch.update({prefix + k: v for k, v in part.items()})
            yield batch
            step += 1

    return batches


def weighted_batches(dataset, rollouts: ScoredRollouts, weights: np.ndarray, batch_size: int, seed: int):
    """``batches(start_step)``: windows of episodes drawn with ``weights``, at a uniform step of each."""

    def batches(start_step: int) -> Iterator[dict]:
        step = start_step
        while True:
            rng = np.random.default_rng([seed, step])
            episodes = rng.choice(len(weights), batch_size, p=weights)
            t = np.floor(rng.random(batch_size) * rollouts.lengths[episodes]).astype(np.int64)
            yield dataset.get_batch(rollouts.starts[episodes] + t)
            step += 1

    return batches


@dataclass(frozen=True)
class AlignMethod:
    """An alignment method: the objective module and how one round's batches are drawn."""

    objective: Callable[..., nn.Module]  # (policy, reference, beta, sft_weight) -> a module with compute_loss
    batches: Callable[..., Callable[[int], Iterator[dict]]]  # (dataset, rollouts, job, seed) -> batches(start)
    needs_likelihood: bool  # whether the policy must implement chunk_log_likelihood


def _dpo_batches(dataset, rollouts, job, seed):
    pairs = preference_pairs(rollouts, job.top_fraction, job.winners_succeed, job.max_pairs, seed)
    return pair_batches(dataset, rollouts, pairs, job.batch_size, seed)


def _weighted_batches(dataset, rollouts, job, seed):
    return weighted_batches(dataset, rollouts, return_weights(rollouts, job.temperature), job.batch_size, seed)


def _filtered_batches(dataset, rollouts, job, seed):
    weights = np.zeros(len(rollouts.returns))
    weights[kept_episodes(rollouts, job.top_fraction, job.winners_succeed)] = 1.0
    return weighted_batches(dataset, rollouts, weights / weights.sum(), job.batch_size, seed)


ALIGN_METHODS: Registry[AlignMethod] = Registry("alignment method")
ALIGN_METHODS.register("dpo")(AlignMethod(DPOObjective, _dpo_batches, True))
ALIGN_METHODS.register("weighted_bc")(AlignMethod(ImitationObjective, _weighted_batches, False))
ALIGN_METHODS.register("filtered_bc")(AlignMethod(ImitationObjective, _filtered_batches, False))
