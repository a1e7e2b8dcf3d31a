"""Cross-entropy and its prior-corrected forms (balanced softmax, logit adjustment)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..core.errors import ConfigError
from ..core.registry import LOSSES
from .base import LongTailLoss
from .functional import cross_entropy_terms


@LOSSES.register("ce")
class CrossEntropy(LongTailLoss):
    """Cross-entropy, optionally label-smoothed; class weights as PyTorch's weighted mean.

    ``sum_i s_i w_{y_i} CE_i / sum_i w_{y_i}``. With ``label_smoothing`` the smoothed target mixes
    ``(1 - eps)`` of the true class with ``eps`` spread uniformly; the class weight applies per
    sample (``w_{y_i}``), which equals ``F.cross_entropy`` when weights are uniform.
    """

    def __init__(self, class_counts: Sequence[int], label_smoothing: float = 0.0) -> None:
        super().__init__(class_counts)
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing: must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def compute(self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor | None, sample_weight: torch.Tensor) -> torch.Tensor:
        return self.weighted_mean(cross_entropy_terms(logits, targets, self.label_smoothing), targets, sample_weight)


class _PriorShiftedCE(LongTailLoss):
    """CE on ``z + shift`` with a fixed per-class shift derived from the training prior."""

    shift: torch.Tensor

    def compute(self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor | None, sample_weight: torch.Tensor) -> torch.Tensor:
        return self.weighted_mean(cross_entropy_terms(logits + self.shift, targets), targets, sample_weight)


@LOSSES.register("balanced_softmax")
class BalancedSoftmax(_PriorShiftedCE):
    """Balanced softmax (Ren et al., NeurIPS 2020): CE on z + log n_c; predict with plain z.

    Training on prior-shifted logits makes the raw logits estimate the class-balanced posterior.
    Uniform counts shift every logit equally, so it reduces to plain CE.
    """

    def __init__(self, class_counts: Sequence[int]) -> None:
        super().__init__(class_counts)
        self.register_buffer("shift", self.class_counts.log(), persistent=False)


@LOSSES.register("logit_adjusted")
class LogitAdjusted(_PriorShiftedCE):
    """Logit-adjusted loss (Menon et al., ICLR 2021): CE on z + tau * log prior.

    ``pi`` = training class prior; ``tau = 1`` is Fisher-consistent for the balanced error and
    equals balanced softmax. Uniform counts reduce it to plain CE.
    """

    def __init__(self, class_counts: Sequence[int], tau: float = 1.0) -> None:
        super().__init__(class_counts)
        self.tau = float(tau)
        prior = self.class_counts / self.class_counts.sum()
        self.register_buffer("shift", self.tau * prior.log(), persistent=False)
