"""``objective=mmd``: the classic domain-adaptation baseline Lang4Sim2Real compares language against.

Deep Adaptation Networks (Long et al., ICML 2015) train features on a supervised task while pulling the two domains'
feature distributions together by their maximum mean discrepancy (MMD). Here the task is stage classification (the
stage of each frame, from the experts' captions: the same labels the language objectives see, without the language
geometry), and the discrepancy is the squared MMD between every pair of domains in the batch, with a sum of Gaussian
kernels whose bandwidths are multiples of the median pairwise distance (the multi-kernel form DAN uses). A batch
holds equal shares of every domain, so each domain's sample is the same size.
"""

from __future__ import annotations

import torch

from embodied.pretrain.language import StageClassifyObjective

BANDWIDTH_MULTIPLES = (0.25, 0.5, 1.0, 2.0, 4.0)  # of the median pairwise squared distance


def mmd2(x: torch.Tensor, y: torch.Tensor, multiples=BANDWIDTH_MULTIPLES) -> torch.Tensor:
    """The (biased, V-statistic) squared MMD of samples ``x`` (n, d) and ``y`` (m, d) under a sum of Gaussian
    kernels; bandwidths from the median squared distance of the pooled sample (not differentiated through)."""
    z = torch.cat([x, y])
    d2 = torch.cdist(z, z).square()
    scale = d2.detach()[d2.detach() > 0].median().clamp_min(1e-6) if (d2.detach() > 0).any() else d2.new_tensor(1.0)
    kernel = sum(torch.exp(-d2 / (scale * m)) for m in multiples) / len(multiples)
    n = len(x)
    return kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2 * kernel[:n, n:].mean()


class MMDObjective(StageClassifyObjective):
    """``mmd``: stage cross-entropy plus ``weight`` x the squared MMD between the domains' pooled features."""

    def __init__(self, encoder, text_encoder: dict | None = None, weight: float = 1.0):
        super().__init__(encoder, text_encoder)
        if weight < 0:
            raise ValueError(f"objective_args.weight must be >= 0, got {weight}")
        self.weight = float(weight)

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """Cross-entropy over the stages + weight x the mean squared MMD over pairs of domains."""
        features = self.features(batch["images"])
        logits = self.head(features)
        target = batch["caption"].to(self.device)
        ce = torch.nn.functional.cross_entropy(logits, target)
        domain = batch["domain"].to(self.device)
        present = torch.unique(domain).tolist()
        pairs = [(a, b) for i, a in enumerate(present) for b in present[i + 1 :]]
        discrepancy = (
            sum(mmd2(features[domain == a], features[domain == b]) for a, b in pairs) / len(pairs)
            if pairs
            else features.new_zeros(())
        )
        loss = ce + self.weight * discrepancy
        accuracy = (logits.argmax(-1) == target).float().mean().item()
        return loss, {"stage_ce": ce.item(), "mmd2": discrepancy.detach().item(), "accuracy": accuracy}
