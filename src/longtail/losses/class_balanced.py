"""Class-balanced loss via the effective number of samples (Cui et al., CVPR 2019)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from ..core.registry import LOSSES
from .base import LongTailLoss, check_choice, check_non_negative
from .functional import cross_entropy_terms, sigmoid_focal_elements
from .weighting import effective_number_weights


@LOSSES.register("cb")
class ClassBalancedLoss(LongTailLoss):
    """Class-balanced loss (Cui et al., CVPR 2019): effective-number weights on softmax CE, sigmoid BCE or sigmoid focal.

    ``softmax_bce`` is the 'softmax' branch of the widely copied vandit15/Class-balanced-loss-pytorch
    ``CB_loss``, which weight balancing's official code trains its second stage with: the binary
    cross-entropy of the softmax probabilities against the one-hot label, ``w_{y_i}`` on every element of
    row i, averaged over N x C (torch's ``binary_cross_entropy``, whose logs are clamped at -100).

    As in the paper the weighted loss is summed over classes and averaged over the batch
    (``sum_i s_i cb_{y_i} w_{y_i} l_i / N``); ``focal`` is the sigmoid focal loss of the paper.
    (CDB's EGTEA ``CB_Focal`` used a softmax focal loss with a detached modulator and the batch
    mean: use ``loss: {name: focal, weighting: cdb}`` with ``class_weights: {name: effective_number,
    beta: 0.9}`` for that.) ``beta = 0`` gives plain CE / BCE.
    """

    def __init__(
        self,
        class_counts: Sequence[int],
        beta: float = 0.9999,
        base: Literal["softmax", "sigmoid", "focal", "softmax_bce"] = "softmax",
        gamma: float = 1.0,
    ) -> None:
        super().__init__(class_counts)
        check_choice("base", base, ("softmax", "sigmoid", "focal", "softmax_bce"))
        check_non_negative("gamma", gamma)
        self.beta, self.base, self.gamma = float(beta), base, float(gamma)
        cb = effective_number_weights(self.class_counts.numpy(), self.beta)
        self.register_buffer("cb_weights", torch.as_tensor(cb, dtype=torch.float32), persistent=False)

    def compute(self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor | None, sample_weight: torch.Tensor) -> torch.Tensor:
        if self.base == "softmax":
            per_sample = cross_entropy_terms(logits, targets)
        elif self.base == "softmax_bce":
            one_hot = F.one_hot(targets, logits.shape[1]).to(logits.dtype)
            per_sample = F.binary_cross_entropy(logits.softmax(1), one_hot, reduction="none").mean(1)
        else:
            per_sample = sigmoid_focal_elements(logits, targets, self.gamma if self.base == "focal" else 0.0).sum(1)
        return self.batch_mean(per_sample, targets, sample_weight, extra=self.cb_weights)
