"""Learned visual rewards over episodes of camera frames: RAPL's aligned-encoder OT reward, the RLHF baseline and
the frozen-encoder OT reward, one module with ``compute_loss`` for the Trainer and ``episode_rewards`` for scoring.

An episode is its frames every ``frame_stride`` steps. The encoder (any registered one) turns frames into
*backbone features*; with a frozen encoder those are computed once per episode (:meth:`backbone_features`) and
batches carry them, so alignment trains only the head at the speed of a linear layer; otherwise batches carry
uint8 frames and gradients reach the encoder's trainable part (last_n blocks, LoRA adapters, all of it).

Batches (from :mod:`embodied.rewards.queries`): ``x`` (B, K, T, ...) features or frames of the K = 3 (or 2) episodes
of each query, ``mask`` (B, K, T), ``ranks`` (B, K) float (0 best, equal episodes share a rank, -1 an unused slot).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from embodied.registry import Registry
from embodied.rewards.config import RewardConfig
from embodied.rewards.ot import ot_distance, ot_frame_costs


class VisualReward(nn.Module):
    """See the module docstring; the method (``config.method``) comes from :data:`REWARD_METHODS`. Demos
    (:meth:`set_demos`): the preferred demonstrations RAPL and OT rewards match against."""

    def __init__(self, config: RewardConfig, image_shape: tuple[int, int, int], backbone_config: dict | None = None):
        super().__init__()
        from embodied.encoders import make_encoder

        self.config = config
        self.encoder = make_encoder(config.encoder, backbone_config=backbone_config)
        with torch.no_grad():
            probe = self.encoder.eval()(torch.zeros(1, *image_shape, dtype=torch.uint8))
        self.encoder.train(False)
        self.feature_dim = int(self._select(probe).shape[-1])
        self.method = REWARD_METHODS.get(config.method)
        self.head = self.method.head(self.feature_dim, config.head_dim)
        self.register_buffer("demo_features", torch.zeros(0, 0, self.feature_dim), persistent=False)
        self.register_buffer("demo_mask", torch.zeros(0, 0, dtype=torch.bool), persistent=False)

    # ------------------------------------------------------------------ features
    @property
    def caches_features(self) -> bool:
        """Whether the encoder is frozen, so backbone features can be computed once per episode."""
        return not any(p.requires_grad for p in self.encoder.parameters())

    def _select(self, output) -> torch.Tensor:
        if self.config.features == "tokens":
            return output.tokens.flatten(1)
        return output.pooled

    def backbone_features(self, frames: torch.Tensor, chunk: int = 64) -> torch.Tensor:
        """uint8 frames (N, H, W, 3) -> (N, F) features, in chunks, without gradients."""
        device = next(self.encoder.parameters()).device
        with torch.no_grad():
            parts = [self._select(self.encoder(frames[i : i + chunk].to(device))) for i in range(0, len(frames), chunk)]
        return torch.cat(parts) if parts else torch.zeros(0, self.feature_dim, device=device)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """Batch ``x`` (..., F) features or (..., H, W, 3) uint8 frames -> (..., F)."""
        if x.dtype != torch.uint8:
            return x
        lead = x.shape[:-3]
        return self._select(self.encoder(x.reshape(-1, *x.shape[-3:]))).reshape(*lead, -1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Features or frames -> what rewards compare: head outputs (rapl: (..., head_dim); rlhf: (..., 1))."""
        return self.head(self._features(x))

    def set_demos(self, demos: list[torch.Tensor]) -> None:
        """The preferred demonstrations (each (T, ...) features or frames) that OT rewards match against."""
        if not demos:  # an RLHF reward learned without demos: nothing to match against
            self.demo_features = torch.zeros(0, 0, self.feature_dim, device=self.demo_features.device)
            self.demo_mask = torch.zeros(0, 0, dtype=torch.bool, device=self.demo_features.device)
            return
        was_training = self.training
        self.eval()  # demos are encoded as they will be compared: no augmentation, no gradients
        with torch.no_grad():
            features = [self._features(d) if d.dtype == torch.uint8 else d for d in demos]
        self.train(was_training)
        length = max(len(f) for f in features)
        padded = torch.zeros(len(features), length, self.feature_dim, device=features[0].device)
        mask = torch.zeros(len(features), length, dtype=torch.bool, device=features[0].device)
        for i, f in enumerate(features):
            padded[i, : len(f)], mask[i, : len(f)] = f, True
        self.demo_features, self.demo_mask = padded, mask

    # ------------------------------------------------------------------ training
    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """Binary cross-entropy of the method's Bradley-Terry logits (RAPL: OT costs to each query's best episode;
        RLHF: episode returns) against the answers (1, 0, or 0.5 for equally good)."""
        if self.method.logits is None:
            raise ValueError(f"reward.method={self.config.method} has nothing to train (a fixed reward)")
        logits, targets = self.method.logits(self, batch)
        loss = F.binary_cross_entropy_with_logits(logits, targets)
        strict = targets != 0.5
        accuracy = ((logits > 0) == (targets > 0.5))[strict].float().mean() if strict.any() else logits.new_zeros(())
        return loss, {"loss": float(loss.detach()), "accuracy": float(accuracy)}

    def rapl_logits(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """P(second ≻ third | anchor = the best episode) = softmax of negative OT costs; equal ranks target 0.5."""
        x, mask, ranks = batch["x"], batch["mask"], batch["ranks"]
        if x.shape[1] != 3 or bool((ranks < 0).any()):
            raise ValueError("method=rapl learns from triplet queries (3 episodes each); pairs train method=rlhf")
        order = torch.argsort(ranks, dim=1, stable=True)  # best, middle, worst
        rows = torch.arange(len(x), device=x.device)[:, None]
        x, mask, ranks = x[rows, order], mask[rows, order], ranks[rows, order]
        z = self.embed(x)
        b = len(z)
        # middle and worst against the anchor in one batched Sinkhorn: (2B, T, D)
        distances = ot_distance(torch.cat([z[:, 1], z[:, 2]]), torch.cat([z[:, 0], z[:, 0]]),
                                torch.cat([mask[:, 1], mask[:, 2]]), torch.cat([mask[:, 0], mask[:, 0]]),
                                self.config.epsilon, self.config.sinkhorn_iterations)  # fmt: skip
        d_middle, d_worst = distances[:b], distances[b:]
        targets = torch.where(ranks[:, 1] < ranks[:, 2], 1.0, 0.5).to(z.dtype)
        return (d_worst - d_middle) / self.config.temperature, targets

    def rlhf_logits(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Every pair of a query's episodes: logit = return difference, target 1 / 0 / 0.5 (equal)."""
        x, mask, ranks = batch["x"], batch["mask"], batch["ranks"]
        returns = (self.embed(x).squeeze(-1) * mask).sum(-1)  # (B, K)
        logits, targets = [], []
        for i in range(x.shape[1]):
            for j in range(i + 1, x.shape[1]):
                valid = (ranks[:, i] >= 0) & (ranks[:, j] >= 0)
                target = torch.where(ranks[:, i] < ranks[:, j], 1.0, torch.where(ranks[:, i] > ranks[:, j], 0.0, 0.5))
                logits.append((returns[:, i] - returns[:, j])[valid])
                targets.append(target[valid].to(returns.dtype))
        return torch.cat(logits), torch.cat(targets)

    # ------------------------------------------------------------------ rewards
    def frame_rewards(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-frame rewards (B, T) of a batch of episodes (B, T, ...) (zero on padding): RLHF's head output, or
        minus the frame's OT matching cost to the closest preferred demo (RAPL, OT)."""
        z = self.embed(x)
        if not self.method.matches_demos:
            return z.squeeze(-1) * mask
        if len(self.demo_features) == 0:
            raise ValueError("this reward matches episodes against preferred demos: call set_demos first")
        demos, demo_mask = self.embed(self.demo_features), self.demo_mask
        b, d = len(z), len(demos)
        # every episode against every demo in one batched Sinkhorn: (B * D, T, ...), episode-major
        costs = ot_frame_costs(z.repeat_interleave(d, 0), demos.repeat(b, 1, 1), mask.repeat_interleave(d, 0),
                               demo_mask.repeat(b, 1), self.config.epsilon,
                               self.config.sinkhorn_iterations).reshape(b, d, -1)  # fmt: skip
        closest = costs.sum(-1).argmin(1)  # the demo each episode matches best
        best = costs[torch.arange(b, device=z.device), closest]
        return -best * mask


@dataclass(frozen=True)
class RewardMethod:
    """One way of learning a visual reward (``reward.method``): its head on the encoder's features, its
    Bradley-Terry logits for a batch (None: nothing to train), and whether frames are rewarded by OT matching to
    preferred demos (else the head's output per frame is the reward)."""

    head: Callable[[int, int], nn.Module]  # (feature_dim, head_dim) -> head
    logits: Callable[[VisualReward, dict], tuple[torch.Tensor, torch.Tensor]] | None
    matches_demos: bool
    triplets_only: bool = False  # learns from 3-episode queries only (RAPL's anchor is a triplet's best)


REWARD_METHODS: Registry[RewardMethod] = Registry("reward method")
REWARD_METHODS.register("rapl")(
    RewardMethod(nn.Linear, VisualReward.rapl_logits, matches_demos=True, triplets_only=True)
)
REWARD_METHODS.register("rlhf")(
    RewardMethod(
        lambda f, d: nn.Sequential(nn.Linear(f, d), nn.ReLU(), nn.Linear(d, 1)),
        VisualReward.rlhf_logits,
        matches_demos=False,
    )  # fmt: skip
)
REWARD_METHODS.register("ot")(RewardMethod(lambda f, d: nn.Identity(), None, matches_demos=True))
