"""Equalization loss (Tan et al., CVPR 2020), sigmoid form as shipped with CDB-loss."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..core.errors import ConfigError
from ..core.registry import LOSSES
from .base import LongTailLoss
from .functional import sigmoid_focal_elements


@LOSSES.register("eql")
class EqualizationLoss(LongTailLoss):
    """Equalization loss (Tan et al., CVPR 2020): sigmoid BCE without other classes' negative gradients on rare classes.

    ``w_ij = 1 - E * T(f_j) * (1 - y_ij)`` with ``T(f_j) = 1`` when class frequency
    ``f_j = n_j / sum n < lambda_``, and ``E`` ~ Bernoulli(``gamma``) drawn once per batch from
    torch's global RNG (so seeded runs repeat). Loss ``sum_ij s_i w_{y_i} w_ij BCE_ij / N``.
    Defaults are CDB's CIFAR flags (0.005, 0.9); EGTEA used 0.03, 0.95.
    """

    def __init__(self, class_counts: Sequence[int], lambda_: float = 0.005, gamma: float = 0.9) -> None:
        super().__init__(class_counts)
        if not 0.0 <= gamma <= 1.0:
            raise ConfigError(f"gamma: the probability of applying EQL in a batch must be in [0, 1], got {gamma}")
        self.lambda_, self.gamma = float(lambda_), float(gamma)
        frequency = self.class_counts / self.class_counts.sum()
        self.register_buffer("tail", (frequency < self.lambda_).float(), persistent=False)

    def element_weights(self, targets: torch.Tensor, apply: bool) -> torch.Tensor:
        """``w_ij`` for this batch given the Bernoulli draw ``apply`` (E)."""
        onehot = F.one_hot(targets, self.num_classes).float()
        if not apply:
            return torch.ones_like(onehot)
        return 1.0 - self.tail[None, :] * (1.0 - onehot)

    def compute(self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor | None, sample_weight: torch.Tensor) -> torch.Tensor:
        apply = bool(torch.rand(()) < self.gamma)
        elements = sigmoid_focal_elements(logits, targets, 0.0) * self.element_weights(targets, apply)
        return self.batch_mean(elements.sum(1), targets, sample_weight)
