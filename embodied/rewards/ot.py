"""Entropic optimal transport between a rollout's frame embeddings and a demonstration's, batched, differentiable,
in log space (stable for small epsilon), on whatever device the embeddings live.

RAPL's reward (Tian et al.): with ``C_ij = 1 - cos(phi(o_i), phi(o+_j))`` between rollout frame ``i`` and preferred
demo frame ``j`` and the entropic plan ``P*`` for uniform marginals, frame ``i`` earns ``r_i = -sum_j P*_ij C_ij``
(scaled here by the rollout's length, so a reward is the expected cost of that frame's match and does not shrink
with longer episodes). Against several demos, the closest (lowest total transport cost) one counts.

Episodes of different lengths share a batch through masks: padded frames get zero mass, so they neither send nor
receive any. Checked against POT (``ot.sinkhorn``) on fixed matrices in the tests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DEFAULT_EPSILON = 0.05  # entropic regularisation, in units of the cosine cost (which lies in [0, 2])
DEFAULT_ITERATIONS = 100


def cosine_cost(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``1 - cos`` between every frame of ``x`` (B, n, D) and of ``y`` (B, m, D): (B, n, m), in [0, 2]."""
    return 1.0 - F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).transpose(-1, -2)


def uniform_log_marginal(mask: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """log of uniform weights over the valid frames of each row of ``mask`` (B, n); -inf on padding."""
    counts = mask.sum(-1, keepdim=True).clamp_min(1)
    log_weight = -torch.log(counts.to(dtype)).expand(mask.shape)
    return torch.where(mask, log_weight, torch.full_like(log_weight, -torch.inf))


def sinkhorn(
    cost: torch.Tensor,
    mask_x: torch.Tensor | None = None,
    mask_y: torch.Tensor | None = None,
    epsilon: float = DEFAULT_EPSILON,
    iterations: int = DEFAULT_ITERATIONS,
) -> torch.Tensor:
    """The entropic OT plan (B, n, m) for ``cost`` (B, n, m) between uniform marginals over the valid frames
    (masks (B, n) and (B, m), True = a real frame; None: all real): log-domain Sinkhorn iterations, differentiable
    through every iteration. Rows and columns of the plan sum to the marginals (1/n_valid, 1/m_valid)."""
    if cost.dim() == 2:
        return sinkhorn(cost[None], None if mask_x is None else mask_x[None],
                        None if mask_y is None else mask_y[None], epsilon, iterations)[0]  # fmt: skip
    batch, n, m = cost.shape
    if mask_x is None:
        mask_x = torch.ones(batch, n, dtype=torch.bool, device=cost.device)
    if mask_y is None:
        mask_y = torch.ones(batch, m, dtype=torch.bool, device=cost.device)
    dtype = torch.float64 if cost.dtype == torch.float64 else torch.float32  # half precision would underflow
    log_a, log_b = uniform_log_marginal(mask_x, dtype), uniform_log_marginal(mask_y, dtype)
    kernel = -cost.to(dtype) / epsilon
    # P_ij = exp(kernel_ij + f_i + g_j); padding has f or g = -inf, hence no mass (valid frames keep finite values)
    g = torch.where(mask_y, torch.zeros_like(log_b), log_b)
    f = log_a
    for _ in range(iterations):
        f = log_a - torch.logsumexp(kernel + g[:, None, :], dim=2)
        g = log_b - torch.logsumexp(kernel + f[:, :, None], dim=1)
    f = log_a - torch.logsumexp(kernel + g[:, None, :], dim=2)  # end on rows: each frame's mass is exactly 1/n
    log_plan = kernel + f[:, :, None] + g[:, None, :]
    return torch.exp(log_plan)


def ot_frame_costs(
    x: torch.Tensor,
    y: torch.Tensor,
    mask_x: torch.Tensor | None = None,
    mask_y: torch.Tensor | None = None,
    epsilon: float = DEFAULT_EPSILON,
    iterations: int = DEFAULT_ITERATIONS,
) -> torch.Tensor:
    """Per-frame transport cost of ``x`` (B, n, D) matched to ``y`` (B, m, D): ``n_valid * sum_j P*_ij C_ij``
    (B, n), zero on padding; the episode's total OT cost (:func:`ot_distance`) is their mean over valid frames."""
    cost = cosine_cost(x, y)
    per_frame = (sinkhorn(cost, mask_x, mask_y, epsilon, iterations) * cost).sum(-1)
    n_valid = x.shape[1] if mask_x is None else mask_x.sum(-1, keepdim=True).to(per_frame.dtype)
    return per_frame * n_valid


def ot_distance(x, y, mask_x=None, mask_y=None, epsilon: float = DEFAULT_EPSILON,
                iterations: int = DEFAULT_ITERATIONS) -> torch.Tensor:  # fmt: skip
    """The total entropic OT cost ``<P*, C>`` between each pair of episodes (B,)."""
    cost = cosine_cost(x, y)
    return (sinkhorn(cost, mask_x, mask_y, epsilon, iterations) * cost).sum((-2, -1))
