"""Influence-balanced loss (Park, Lim, Jeon, Choi; ICCV 2021), as shipped (unwired) in HMLoss."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import torch
import torch.nn.functional as F

from ..core.errors import ConfigError
from ..core.registry import LOSSES
from .base import LongTailLoss, check_choice, check_non_negative
from .functional import cross_entropy_terms, focal_modulator

IBWeighting = Literal["longtail", "ib"]


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
    a batch-mean CE. ``alpha`` follows HMLoss (10000; the IB paper's code uses 1000).

    ``weighting`` says where class weights ``w`` (the paper's ``IBReweight``: 1/n_c normalised to
    sum C, ``class_weights: inverse_frequency``) act; without class weights the two forms are the same:

    - ``longtail`` (default): the warm-up CE is weighted too (``sum_i s_i w_{y_i} CE_i / N``);
      ``ib_focal``'s modulator uses the true-class probability.
    - ``ib`` (the official code, pseulki/IB-Loss ``cifar_train.py`` and ``losses.py``, copied in
      cartelgouabou/HMLoss): the warm-up is the unweighted ``nn.CrossEntropyLoss()``
      (``sum_i s_i CE_i / N``), the weights enter the IB phase only, inside the CE
      (``F.cross_entropy(weight=w, reduction='none')``); ``ib_focal``'s ``p_i = exp(-w_{y_i} CE_i)``.
      Once active, ``ib`` itself is the same in both forms, ``mean_i ib_i w_{y_i} CE_i``.

    ``longtail`` is the default because the official focal ``p`` is not the model's probability once
    weights are set; recipes that reproduce the IB paper set ``weighting: ib``.
    """

    needs_features = True

    def __init__(self, class_counts: Sequence[int], alpha: float = 10000.0, start_epoch: int = 1, weighting: IBWeighting = "longtail") -> None:
        super().__init__(class_counts)
        if not alpha > 0:
            raise ConfigError(f"alpha: must be > 0, got {alpha}")
        if int(start_epoch) < 1:
            raise ConfigError(f"start_epoch: epochs are 1-based, so it must be >= 1, got {start_epoch}")
        check_choice("weighting", weighting, get_args(IBWeighting))
        self.alpha, self.start_epoch, self.weighting = float(alpha), int(start_epoch), weighting
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
            if self.weighting == "ib":  # the official warm-up: nn.CrossEntropyLoss(weight=None)
                return (sample_weight * ce).sum() / max(ce.shape[0], 1)
            return self.batch_mean(ce, targets, sample_weight)
        assert features is not None  # the base class checks needs_features
        ib = influence_weights(logits, targets, features, self.alpha)
        return self.batch_mean(ib * self.per_sample(logits, targets, ce), targets, sample_weight)


@LOSSES.register("ib_focal")
class IBFocalLoss(IBLoss):
    """Influence-balanced focal loss (Park et al., ICCV 2021): IB loss times (1 - p_t)^gamma; needs features.

    ``sum_i s_i w_{y_i} ib_i (1 - p_i)^gamma CE_i / N``; same warm-up rule (``start_epoch``) and
    ``weighting`` as ``ib``: ``longtail`` (default) takes ``p_i`` the true-class probability, ``ib``
    (pseulki/IB-Loss ``losses.py`` ``IB_FocalLoss``) ``p_i = exp(-w_{y_i} CE_i)`` from the
    class-weighted CE.
    """

    def __init__(
        self, class_counts: Sequence[int], alpha: float = 10000.0, gamma: float = 1.0, start_epoch: int = 1, weighting: IBWeighting = "longtail"
    ) -> None:
        super().__init__(class_counts, alpha=alpha, start_epoch=start_epoch, weighting=weighting)
        check_non_negative("gamma", gamma)
        self.gamma = float(gamma)

    def per_sample(self, logits: torch.Tensor, targets: torch.Tensor, ce: torch.Tensor) -> torch.Tensor:
        if self.weighting == "ib":  # p from the class-weighted CE; batch_mean applies w_y to the CE
            return focal_modulator(self.sample_class_weights(targets) * ce, self.gamma) * ce
        return focal_modulator(ce, self.gamma) * ce
