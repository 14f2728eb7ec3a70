"""Alignment methods on a real lift_zone store: scored rollouts become correctly ordered pairs; a DPO round moves a
tiny policy toward the preferred chunks while the frozen reference holds; likelihoods agree with the losses."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from embodied.alignment.methods import (
    DISPREFERRED,
    PREFERRED,
    DPOObjective,
    ImitationObjective,
    NoTrainingData,
    ScoredRollouts,
    kept_episodes,
    pair_batches,
    preference_pairs,
    return_weights,
)
from embodied.alignment.rollouts import TRUE_COST, score_episodes
from embodied.datasets.store import EpisodeStore
from embodied.datasets.window_dataset import WindowDataset
from embodied.policies import make_policy
from embodied.policies.bc import BCConfig
from embodied.policies.diffusion import DiffusionConfig
from embodied.rewards.person import episode_costs
from embodied.training.optim import OptimConfig
from embodied.training.trainer import Trainer, TrainerConfig


def scored(store: EpisodeStore) -> ScoredRollouts:
    returns, _ = score_episodes(TRUE_COST, store)
    ends = store.episode_ends
    starts = np.concatenate([[0], ends[:-1]])
    return ScoredRollouts(returns, np.asarray(store.episode_info()["success"], bool), starts, ends - starts)


def test_pairs_put_the_higher_return_first_and_only_successes_win():
    returns = np.array([3.0, 1.0, 2.0, 0.0, 5.0, 4.0, 2.0, -1.0])
    success = np.array([1, 1, 1, 1, 0, 1, 1, 1], bool)
    rollouts = ScoredRollouts(returns, success, np.arange(8) * 10, np.full(8, 10))
    pairs = preference_pairs(rollouts, 0.5, winners_succeed=True, max_pairs=100, seed=0)
    assert len(pairs) and all(returns[w] > returns[lo] for w, lo in pairs)
    assert 4 not in pairs[:, 0]  # the best return failed the task: never preferred
    assert set(pairs[:, 0]) == {5, 0, 2, 6}  # the four best successful rollouts
    free = preference_pairs(rollouts, 0.5, winners_succeed=False, max_pairs=100, seed=0)
    assert 4 in free[:, 0]
    assert len(preference_pairs(rollouts, 0.5, True, max_pairs=3, seed=0)) == 3
    assert list(kept_episodes(rollouts, 0.25, True)) == [0, 5]
    weights = return_weights(rollouts, 0.5)
    assert math.isclose(weights.sum(), 1.0) and np.argmax(weights) == 4 and np.argmin(weights) == 7
    nothing = ScoredRollouts(returns, np.zeros(8, bool), rollouts.starts, rollouts.lengths)
    with pytest.raises(NoTrainingData, match="no rollout succeeded"):
        kept_episodes(nothing, 0.5, True)


def test_rollouts_scored_by_the_true_cost_pair_lower_cost_first(zone_rollouts):
    store = EpisodeStore(zone_rollouts)
    rollouts = scored(store)
    costs = episode_costs(store)
    np.testing.assert_allclose(rollouts.returns, -costs, rtol=1e-6)
    pairs = preference_pairs(rollouts, 0.5, winners_succeed=True, max_pairs=1000, seed=0)
    assert len(pairs) > 20
    assert all(costs[w] < costs[lo] for w, lo in pairs)


def _policy(kind: str, store: EpisodeStore):
    torch.manual_seed(0)
    config = BCConfig.tiny() if kind == "bc" else DiffusionConfig.tiny()
    config.obs_keys = ["proprio", "state"]  # state-only: the test is about the objective, not the encoder
    return make_policy(config, store.features, store.stats)


@pytest.mark.parametrize("kind", ["bc", "diffusion"])
def test_a_dpo_round_raises_the_likelihood_of_preferred_chunks_relative_to_the_reference(zone_rollouts, tmp_path,
                                                                                         kind):  # fmt: skip
    store = EpisodeStore(zone_rollouts)
    rollouts = scored(store)
    policy = _policy(kind, store)
    reference = copy.deepcopy(policy)
    frozen = {k: v.clone() for k, v in reference.state_dict().items()}
    objective = DPOObjective(policy, reference, beta=50.0)
    dataset = WindowDataset(store, policy.key_offsets())
    pairs = preference_pairs(rollouts, 0.5, True, 256, seed=0)
    batches = pair_batches(dataset, rollouts, pairs, 32, seed=0)
    probe = next(batches(10_000))  # a batch the round never trains on
    loss, metrics = objective.compute_loss(probe)
    assert math.isclose(loss.item(), math.log(2), rel_tol=1e-6)  # the policy is its reference: no preference yet
    assert metrics["preferred_log_ratio"] == 0.0
    optim = OptimConfig(lr=1e-3, warmup_steps=0, schedule="constant")
    config = TrainerConfig(steps=40, batch_size=32, micro_batch_size=32, progress=False, log_every=10,
                           checkpoint_every=40, optim=optim)  # fmt: skip
    Trainer(objective, batches, config, tmp_path).fit()
    with torch.no_grad():
        loss, metrics = objective.compute_loss(probe)
    assert loss.item() < math.log(2)
    assert metrics["preferred_log_ratio"] > metrics["dispreferred_log_ratio"]
    assert metrics["dpo_accuracy"] > 0.5
    for key, value in reference.state_dict().items():  # the constraint's anchor never moves
        assert torch.equal(value, frozen[key]), key
    assert all(p.grad is None for p in reference.parameters())
    assert not any(k.startswith("_reference") for k in objective.state_dict())  # checkpoints hold the policy only


def test_identical_pairs_give_no_gradient_where_imitation_would_move(zone_rollouts):
    store = EpisodeStore(zone_rollouts)
    policy = _policy("diffusion", store)
    objective = DPOObjective(policy, copy.deepcopy(policy), beta=50.0)
    dataset = WindowDataset(store, policy.key_offsets())
    part = dataset.get_batch(np.arange(0, 200, 25))
    batch = {"noise_seed": torch.zeros(8, dtype=torch.long)}
    batch.update({PREFERRED + k: v for k, v in part.items()})
    batch.update({DISPREFERRED + k: v for k, v in part.items()})
    loss, _ = objective.compute_loss(batch)
    loss.backward()
    assert math.isclose(loss.item(), math.log(2), rel_tol=1e-6)
    assert max(p.grad.abs().max().item() for p in policy.parameters() if p.grad is not None) == 0.0
    policy.zero_grad()
    imitation, _ = ImitationObjective(policy).compute_loss(part)
    imitation.backward()
    assert max(p.grad.abs().max().item() for p in policy.parameters() if p.grad is not None) > 0.0


def test_chunk_likelihoods_agree_with_the_training_losses(zone_rollouts):
    from embodied.policies.openvla import VLAConfig

    store = EpisodeStore(zone_rollouts)
    bc = _policy("bc", store)
    dataset = WindowDataset(store, bc.key_offsets())
    starts = np.concatenate([[0], store.episode_ends[:-1]])
    rows = (starts[:5, None] + np.array([0, 3])).reshape(-1)  # early steps: no padded actions, so the per-chunk
    # means average to the loss
    batch = dataset.get_batch(rows)
    assert not batch["action_is_pad"].any()
    bc.eval()
    loss, _ = bc.compute_loss(batch)
    log_likelihood = bc.chunk_log_likelihood(batch, torch.Generator().manual_seed(0))
    assert log_likelihood.shape == (len(rows),)
    assert math.isclose(-log_likelihood.mean().item(), loss.item(), rel_tol=1e-5)
    torch.manual_seed(0)
    vla = make_policy(VLAConfig.tiny(), store.features, store.stats).eval()
    batch = WindowDataset(store, vla.key_offsets()).get_batch(rows)
    loss, _ = vla.compute_loss(batch)
    log_likelihood = vla.chunk_log_likelihood(batch, torch.Generator().manual_seed(0))
    assert math.isclose(-log_likelihood.mean().item(), loss.item(), rel_tol=1e-4)
    diffusion = _policy("diffusion", store)
    batch = WindowDataset(store, diffusion.key_offsets()).get_batch(rows)
    first = diffusion.chunk_log_likelihood(batch, torch.Generator().manual_seed(3))
    again = diffusion.chunk_log_likelihood(batch, torch.Generator().manual_seed(3))
    other = diffusion.chunk_log_likelihood(batch, torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and not torch.equal(first, other)  # the draw is the generator's alone
