"""HML: hard mining loss (Foahom Gouabou et al., DICTA 2022 / GRETSI 2022, HMLoss)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..core.registry import LOSSES
from .base import LongTailLoss, check_non_negative
from .functional import cross_entropy_terms


def hard_mining_weight(p: torch.Tensor, delta: float) -> torch.Tensor:
    """``f(p) = sinc(p) - exp(-delta p) sinc(delta p)`` with ``sinc(x) = sin(pi x) / (pi x)``.

    ``f(0) = 0`` (extremely hard samples, likely outliers, are ignored); ``f`` rises to about 1 near
    ``p = 1/delta``, then follows ``sinc(p)`` down to 0 at ``p = 1`` (easy samples, like focal).
    """
    return torch.sinc(p) - torch.exp(-delta * p) * torch.sinc(delta * p)


@LOSSES.register("hml")
class HardMiningLoss(LongTailLoss):
    """Hard mining loss (HMLoss, DICTA 2022): CE times a sinc weight that fades outliers (p~0) and easy samples (p~1).

    ``sum_i s_i w_{y_i} scale f(p_i) CE_i / N`` with ``p_i`` the true-class probability (clipped to
    [1e-10, 1 - 1e-10]). Deviation: HMLoss computed ``p = exp(-w_y CE)`` from the class-weighted
    CE, which is not a probability once weights are used; here ``p`` is always the softmax
    probability and the class weight multiplies the loss only. The paper's HML1 schedule (plain
    CE, then HML with CS weights) is a two-stage config.
    """

    def __init__(self, class_counts: Sequence[int], delta: float = 10000.0, scale: float = 10.0) -> None:
        super().__init__(class_counts)
        check_non_negative("delta", delta)
        check_non_negative("scale", scale)
        self.delta, self.scale = float(delta), float(scale)

    def compute(self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor | None, sample_weight: torch.Tensor) -> torch.Tensor:
        ce = cross_entropy_terms(logits, targets)
        p = torch.exp(-ce).clamp(1e-10, 1.0 - 1e-10)
        return self.batch_mean(self.scale * hard_mining_weight(p, self.delta) * ce, targets, sample_weight)
