"""HML: hard mining loss (Foahom Gouabou et al., DICTA 2022 / GRETSI 2022, HMLoss)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import torch

from ..core.registry import LOSSES
from .base import LongTailLoss, check_choice, check_non_negative
from .functional import cross_entropy_terms

HMLWeighting = Literal["longtail", "hmloss"]


def hard_mining_weight(p: torch.Tensor, delta: float) -> torch.Tensor:
    """``f(p) = sinc(p) - exp(-delta p) sinc(delta p)`` with ``sinc(x) = sin(pi x) / (pi x)``.

    ``f(0) = 0`` (extremely hard samples, likely outliers, are ignored); ``f`` rises to about 1 near
    ``p = 1/delta``, then follows ``sinc(p)`` down to 0 at ``p = 1`` (easy samples, like focal).
    """
    return torch.sinc(p) - torch.exp(-delta * p) * torch.sinc(delta * p)


@LOSSES.register("hml")
class HardMiningLoss(LongTailLoss):
    """Hard mining loss (HMLoss, DICTA 2022): CE times a sinc weight that fades outliers (p~0) and easy samples (p~1).

    ``sum_i s_i scale f(p_i) w_{y_i} CE_i / N`` (``f``: :func:`hard_mining_weight`, ``p`` clipped to
    [1e-10, 1 - 1e-10]). ``weighting`` says which probability ``p_i`` the modulator sees once class
    weights ``w`` are set (without class weights the two forms are the same):

    - ``longtail`` (default): ``p_i = softmax(z_i)_{y_i}``, the true-class probability; the class
      weight multiplies the loss only.
    - ``hmloss`` (the official code, cartelgouabou/HMLoss ``*/losses.py`` ``SoftmaxHardMiningLoss``):
      ``p_i = exp(-w_{y_i} CE_i) = softmax(z_i)_{y_i} ** w_{y_i}``, taken from the class-weighted CE
      (``F.cross_entropy(weight=w, reduction='none')``), then ``mean_i scale f(p_i) w_{y_i} CE_i``.

    The default stays ``longtail`` because the official ``p`` is not the model's probability, so the
    modulator no longer finds the outliers (p~0) and easy samples (p~1) it is meant to: a class
    weight below 1 pushes ``p ** w`` toward 1, where ``f`` vanishes, and one above 1 toward 0. Recipes
    that reproduce HMLoss set ``weighting: hmloss``. The paper's HML1 schedule (plain CE, then HML
    with CS weights) is a two-stage config.
    """

    def __init__(
        self, class_counts: Sequence[int], delta: float = 10000.0, scale: float = 10.0, weighting: HMLWeighting = "longtail"
    ) -> None:
        super().__init__(class_counts)
        check_non_negative("delta", delta)
        check_non_negative("scale", scale)
        check_choice("weighting", weighting, get_args(HMLWeighting))
        self.delta, self.scale, self.weighting = float(delta), float(scale), weighting

    def compute(self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor | None, sample_weight: torch.Tensor) -> torch.Tensor:
        ce = cross_entropy_terms(logits, targets)
        if self.weighting == "hmloss":  # p from the class-weighted CE; batch_mean applies w_y to the CE below
            p = torch.exp(-self.sample_class_weights(targets) * ce).clamp(1e-10, 1.0 - 1e-10)
        else:
            p = torch.exp(-ce).clamp(1e-10, 1.0 - 1e-10)
        return self.batch_mean(self.scale * hard_mining_weight(p, self.delta) * ce, targets, sample_weight)
