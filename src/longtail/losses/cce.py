"""Complement cross-entropy (Kim, Lee, Jeon; Pattern Recognition Letters 2021), as in MBIT."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.registry import LOSSES
from .base import LongTailLoss
from .functional import cross_entropy_terms


def complement_entropy_terms(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``sum_{j != y} q~_j log q~_j / (C - 1)`` per sample, ``q~`` = softmax renormalised over the non-target classes.

    ``q~_j = q_j / (1 - q_y)`` is exactly the softmax of the logits with the target removed, so it is
    computed as a masked log-softmax: no ``1e-7`` / ``1e-10`` fudge terms and no cancellation when
    ``q_y`` is close to 1.
    """
    onehot = F.one_hot(targets, logits.shape[1]).bool()
    logq = F.log_softmax(logits.masked_fill(onehot, float("-inf")), dim=1).masked_fill(onehot, 0.0)
    return (logq.exp().masked_fill(onehot, 0.0) * logq).sum(1) / (logits.shape[1] - 1)


@LOSSES.register("cce")
class ComplementCrossEntropy(LongTailLoss):
    """Complement cross-entropy (Kim et al., PRL 2021): CE plus the negative entropy of the wrong-class probabilities.

    ``sum_i s_i w_{y_i} (CE_i + cce_i) / sum_i w_{y_i}``: flattening the wrong-class distribution
    suppresses confident mistakes toward head classes. Fixes MBIT's bug, which applied the CE
    term to already-softmaxed outputs (a double softmax).
    """

    def compute(self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor | None, sample_weight: torch.Tensor) -> torch.Tensor:
        per_sample = cross_entropy_terms(logits, targets) + complement_entropy_terms(logits, targets)
        return self.weighted_mean(per_sample, targets, sample_weight)
