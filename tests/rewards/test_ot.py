"""The OT reward: Sinkhorn against POT, masks, and a trajectory matched to itself vs a shuffled copy."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch

from embodied.rewards.ot import cosine_cost, ot_distance, ot_frame_costs, sinkhorn


@pytest.mark.parametrize("epsilon", [0.05, 0.2, 1.0])
def test_sinkhorn_marginals_hold_and_match_pot(epsilon):
    cost = np.random.default_rng(0).uniform(0, 2, (9, 6))
    plan = sinkhorn(torch.tensor(cost, dtype=torch.float64), epsilon=epsilon, iterations=2000).numpy()
    reference = ot.sinkhorn(np.full(9, 1 / 9), np.full(6, 1 / 6), cost, epsilon, method="sinkhorn_log",
                            numItermax=20000, stopThr=1e-13)  # fmt: skip
    np.testing.assert_allclose(plan.sum(1), np.full(9, 1 / 9), atol=1e-6)
    np.testing.assert_allclose(plan.sum(0), np.full(6, 1 / 6), atol=1e-6)
    np.testing.assert_allclose(plan, reference, atol=1e-6)


def test_padding_changes_nothing_and_gets_no_mass():
    torch.manual_seed(0)
    x, y = torch.randn(2, 7, 5), torch.randn(2, 6, 5)
    mask_x = torch.tensor([[True] * 4 + [False] * 3, [True] * 7])
    mask_y = torch.tensor([[True] * 3 + [False] * 3, [True] * 6])
    batched = ot_frame_costs(x, y, mask_x, mask_y)
    alone = ot_frame_costs(x[:1, :4], y[:1, :3])
    torch.testing.assert_close(batched[0, :4], alone[0], atol=1e-5, rtol=1e-5)
    assert (batched[0, 4:] == 0).all()
    plan = sinkhorn(cosine_cost(x, y), mask_x, mask_y)
    assert plan[0, 4:].sum() == 0 and plan[0, :, 3:].sum() == 0


def test_gradients_flow_through_the_plan():
    x = torch.randn(1, 5, 4, requires_grad=True)
    ot_distance(x, torch.randn(1, 6, 4)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_a_trajectory_matches_itself_better_than_a_shuffled_copy():
    generator = torch.Generator().manual_seed(0)
    t = torch.linspace(0, 1, 30)[:, None]
    trajectory = torch.cat([torch.cos(3 * t), torch.sin(3 * t), t, 1 - t, t**2], dim=1)[None]
    shuffled = trajectory[..., torch.randperm(5, generator=generator)]  # each frame's features shuffled
    stuck = torch.cat([trajectory[:, :15], trajectory[:, :15]], 1)  # never gets past the middle
    own = -ot_frame_costs(trajectory, trajectory).sum()
    assert own > -ot_frame_costs(shuffled, trajectory).sum()
    assert own > -ot_frame_costs(stuck, trajectory).sum()
    # with uniform marginals OT matches sets of frames: the same frames in another order match equally well
    in_time_shuffled = trajectory[:, torch.randperm(30, generator=generator)]
    torch.testing.assert_close(ot_distance(in_time_shuffled, trajectory), ot_distance(trajectory, trajectory),
                               atol=1e-4, rtol=1e-4)  # fmt: skip
