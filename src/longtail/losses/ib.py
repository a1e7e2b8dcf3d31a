"""Influence-balanced loss (Park, Lim, Jeon, Choi; ICCV 2021), as shipped (unwired) in HMLoss."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..core.errors import ConfigError
from ..core.registry import LOSSES
from .base import LongTailLoss, check_non_negative
from .functional import cross_entropy_terms, focal_modulator


def influence_weights(logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor, alpha: float, eps: float = 1e-3) -> torch.Tensor:
    """``alpha / (||softmax(z_i) - onehot(y_i)||_1 * ||h_i||_1 + eps)`` per sample (``h`` = penultimate features).

    The product approximates the norm of the sample's gradient on the last layer (its influence).
    Gradients flow through it, as in the reference implementation.
    """
    residual = (torch.softmax(logits, 1) - F.one_hot(targets, logits.shape[1]).to(logits.dtype)).abs().sum(1)
    return alpha / (residual * features.abs().sum(1) + eps)


@LOSSES.register("ib")
class IBLoss(LongTailLoss):
    """Influence-balanced loss (Park et al., ICCV 2021): CE divided by each sample's influence; needs features.

    ``sum_i s_i w_{y_i} ib_i CE_i / N``. IB is meant to start after a CE warm-up (the paper uses
    100 of 200 epochs): before ``start_epoch`` (1-based, set through ``on_epoch_start``) the loss is
    the batch-mean weighted CE. ``alpha`` follows HMLoss (10000; the IB paper's code uses 1000).
    """

    needs_features = True

    def __init__(self, class_counts: Sequence[int], alpha: float = 10000.0, start_epoch: int = 1) -> None:
        super().__init__(class_counts)
        if not alpha > 0:
            raise ConfigError(f"alpha: must be > 0, got {alpha}")
        if int(start_epoch) < 1:
            raise ConfigError(f"start_epoch: epochs are 1-based, so it must be >= 1, got {start_epoch}")
        self.alpha, self.start_epoch = float(alpha), int(start_epoch)
        self.epoch = 1

    @property
    def active(self) -> bool:
        """Whether the influence weighting is on in the current epoch."""
        return self.epoch >= self.start_epoch

    def on_epoch_start(self, epoch: int, max_epoch: int) -> None:
        self.epoch = int(epoch)

    def per_sample(self, logits: torch.Tensor, targets: torch.Tensor, ce: torch.Tensor) -> torch.Tensor:
        """The per-sample loss once IB is active (CE; the focal variant adds its modulator)."""
        return ce

    def compute(self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor | None, sample_weight: torch.Tensor) -> torch.Tensor:
        ce = cross_entropy_terms(logits, targets)
        if not self.active:
            return self.batch_mean(ce, targets, sample_weight)
        assert features is not None  # the base class checks needs_features
        ib = influence_weights(logits, targets, features, self.alpha)
        return self.batch_mean(ib * self.per_sample(logits, targets, ce), targets, sample_weight)


@LOSSES.register("ib_focal")
class IBFocalLoss(IBLoss):
    """Influence-balanced focal loss (Park et al., ICCV 2021): IB loss times (1 - p_t)^gamma; needs features.

    ``p_t`` is the true (unweighted) probability. Same warm-up rule (``start_epoch``) as ``ib``.
    """

    def __init__(self, class_counts: Sequence[int], alpha: float = 10000.0, gamma: float = 1.0, start_epoch: int = 1) -> None:
        super().__init__(class_counts, alpha=alpha, start_epoch=start_epoch)
        check_non_negative("gamma", gamma)
        self.gamma = float(gamma)

    def per_sample(self, logits: torch.Tensor, targets: torch.Tensor, ce: torch.Tensor) -> torch.Tensor:
        return focal_modulator(ce, self.gamma) * ce
