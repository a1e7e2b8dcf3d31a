"""MWNL: multi-weighted new loss (Yao et al., IEEE TMI 2022 "single model" skin-lesion paper, MBIT)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from ..core.errors import ConfigError
from ..core.registry import LOSSES
from .base import ElementReduction, LongTailLoss, check_choice, check_non_negative
from .functional import sigmoid_signs

ClipType = Literal["zero", "fix", "decrease"]


def clip_abnormal(bce: torch.Tensor, beta: float, clip: ClipType) -> torch.Tensor:
    """Limit element losses above ``th = -ln(beta)`` (elements with ``p_t < beta``, likely label noise).

    ``fix``: ``min(l, th)``; ``zero``: ``0`` above ``th``; ``decrease``: ``p_t * th / beta`` above
    ``th`` (continuous at ``th``, then decaying with ``p_t = exp(-l)``). ``beta = 0``: no clipping.
    """
    if beta == 0:
        return bce
    th = -math.log(beta)
    if clip == "fix":
        return bce.clamp(max=th)
    if clip == "zero":
        return torch.where(bce <= th, bce, torch.zeros_like(bce))
    return torch.where(bce <= th, bce, torch.exp(-bce) * (th / beta))


@LOSSES.register("mwnl")
class MWNLoss(LongTailLoss):
    """MWNL (Yao et al., TMI 2022): sigmoid BCE x class weights x focal modulator, clipped at -ln(beta).

    Per element (one-vs-all against one-hot): ``l = BCE``, clipped by :func:`clip_abnormal`, times
    ``(1 - p_t)^gamma`` computed from the unclipped ``p_t``, rows weighted by ``w_{y_i}`` (the class
    weights come from a schedule: MBIT recipes use ``cls`` or ``inverse_frequency``).
    ``reduction`` ``normal`` = sum / sum of broadcast weights; ``enlarge`` = mean over N x C times 30.
    """

    def __init__(
        self,
        class_counts: Sequence[int],
        beta: float = 0.1,
        clip: ClipType = "fix",
        gamma: float = 2.0,
        reduction: ElementReduction = "normal",
    ) -> None:
        super().__init__(class_counts)
        if not 0.0 <= beta <= 0.4:
            raise ConfigError(f"beta: MWNL's clipping probability must be in [0, 0.4], got {beta}")
        check_choice("clip", clip, ("zero", "fix", "decrease"))
        check_choice("reduction", reduction, ("normal", "enlarge"))
        check_non_negative("gamma", gamma)
        self.beta, self.clip, self.gamma, self.reduction = float(beta), clip, float(gamma), reduction

    def compute(self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor | None, sample_weight: torch.Tensor) -> torch.Tensor:
        sz = sigmoid_signs(logits, targets)
        elements = clip_abnormal(F.softplus(-sz), self.beta, self.clip)
        if self.gamma:
            elements = elements * torch.exp(self.gamma * F.logsigmoid(-sz))
        return self.element_reduce(elements, targets, sample_weight, self.reduction)
