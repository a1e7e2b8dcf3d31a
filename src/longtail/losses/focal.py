"""Focal loss (Lin et al., ICCV 2017) in the three variants MBIT ships, which also cover CDB and HMLoss."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from ..core.errors import ConfigError
from ..core.registry import LOSSES
from .base import ElementReduction, LongTailLoss, check_choice, check_non_negative
from .functional import ldam_margins, sigmoid_focal_elements, softmax_focal_terms, subtract_target_margin


@LOSSES.register("focal")
class FocalLoss(LongTailLoss):
    """Focal loss (Lin et al., ICCV 2017) (1 - p_t)^gamma * CE: softmax, one-vs-all sigmoid, or LDAM-margined.

    - ``softmax`` (MBIT ``cross_entropy``, CDB ``FL``, HMLoss ``Focal``): ``sum_i s_i w_{y_i} (1-p_i)^gamma CE_i / sum_i w_{y_i}``.
      ``p_i`` is the true (unweighted) probability: HMLoss computed it from the class-weighted CE,
      which is not a probability; we do not reproduce that.
    - ``sigmoid`` (MBIT default, CDB ImageNet-LT): element-wise BCE against one-hot times
      ``(1 - p_t)^gamma`` per element, rows weighted by ``w_{y_i}``; ``reduction`` ``normal`` =
      sum / sum of the broadcast weights, ``enlarge`` = mean over N x C times 30.
    - ``ldam``: the softmax form on ``scale * (z - m_y)`` with LDAM margins (``max_margin``, ``scale``).

    ``gamma = 0`` gives (weighted) CE / BCE / LDAM.
    """

    def __init__(
        self,
        class_counts: Sequence[int],
        gamma: float = 2.0,
        variant: Literal["softmax", "sigmoid", "ldam"] = "softmax",
        reduction: ElementReduction = "normal",
        max_margin: float = 0.5,
        scale: float = 30.0,
    ) -> None:
        super().__init__(class_counts)
        check_non_negative("gamma", gamma)
        check_choice("variant", variant, ("softmax", "sigmoid", "ldam"))
        check_choice("reduction", reduction, ("normal", "enlarge"))
        if reduction == "enlarge" and variant != "sigmoid":
            raise ConfigError("reduction: 'enlarge' applies to the sigmoid variant only (MBIT FOCAL.SIGMOID); use reduction: normal")
        self.gamma, self.variant, self.reduction = float(gamma), variant, reduction
        self.scale = float(scale)
        self.register_buffer("margins", ldam_margins(self.class_counts, float(max_margin)), persistent=False)

    def compute(self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor | None, sample_weight: torch.Tensor) -> torch.Tensor:
        if self.variant == "sigmoid":
            elements = sigmoid_focal_elements(logits, targets, self.gamma)
            return self.element_reduce(elements, targets, sample_weight, self.reduction)
        if self.variant == "ldam":
            logits = self.scale * subtract_target_margin(logits, targets, self.margins)
        return self.weighted_mean(softmax_focal_terms(logits, targets, self.gamma), targets, sample_weight)
