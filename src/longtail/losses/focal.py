"""Focal loss (Lin et al., ICCV 2017) in the three variants MBIT ships, which also cover CDB and HMLoss."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import torch

from ..core.errors import ConfigError
from ..core.registry import LOSSES
from .base import ElementReduction, LongTailLoss, check_choice, check_non_negative
from .functional import cross_entropy_terms, focal_modulator, ldam_margins, sigmoid_focal_elements, softmax_focal_terms, subtract_target_margin

FocalWeighting = Literal["mbit", "ldam_drw", "cdb"]


@LOSSES.register("focal")
class FocalLoss(LongTailLoss):
    """Focal loss (Lin et al., ICCV 2017) (1 - p_t)^gamma * CE: softmax, one-vs-all sigmoid, or LDAM-margined.

    - ``softmax`` (MBIT ``cross_entropy``, CDB ``FL``, HMLoss ``Focal``): per-sample
      ``(1 - p_i)^gamma CE_i``, class weights and reduction as ``weighting`` says (below).
    - ``sigmoid`` (MBIT default, CDB ImageNet-LT): element-wise BCE against one-hot times
      ``(1 - p_t)^gamma`` per element, rows weighted by ``w_{y_i}``; ``reduction`` ``normal`` =
      sum / sum of the broadcast weights, ``enlarge`` = mean over N x C times 30.
    - ``ldam``: the softmax form on ``scale * (z - m_y)`` with LDAM margins (``max_margin``, ``scale``).

    ``weighting`` (softmax variant; the other variants take ``mbit`` only) names the official code
    whose treatment of the class weights ``w`` it reproduces:

    - ``mbit`` (default; yaopengUSTC/mbit-skin-cancer ``lib/loss/loss.py`` ``FocalLoss``
      ``cross_entropy``, the PyTorch ``weight=`` convention): ``sum_i s_i w_{y_i} (1 - p_i)^gamma
      CE_i / sum_i w_{y_i}`` with ``p_i`` the true-class probability (the weight sum over the global
      batch under DDP).
    - ``ldam_drw`` (kaidic/LDAM-DRW ``losses.py`` ``FocalLoss``, copied by cartelgouabou/HMLoss and
      pseulki/IB-Loss): ``p`` comes from the class-weighted CE, ``p_i = exp(-w_{y_i} CE_i) = p_true **
      w_{y_i}``, and the batch mean ``mean_i s_i (1 - p_i)^gamma w_{y_i} CE_i``. (pseulki/IB-Loss's
      copy also multiplies by 10.)
    - ``cdb`` (hitachi-rd-cv/CDB-loss ``EGTEA/losses/focal_loss.py`` ``FocalLoss(alpha=w)``, behind
      ``CB_Focal`` and ``FL``, averaged over the batch by the training loop): ``mean_i s_i w_{y_i}
      (1 - p_i)^gamma CE_i`` with the true ``p_i`` and the modulator detached (no gradient through it).

    Without class weights ``mbit`` and ``ldam_drw`` are the same loss. ``mbit`` is the default because
    it is the focal loss as defined (alpha-balanced, true probability) and MBIT's exact code;
    ``ldam_drw``'s ``p`` is not the model's probability once weights are set, and ``cdb``'s detached
    modulator changes the gradient. Recipes that reproduce LDAM-DRW's, HMLoss's, IB's or CDB's focal
    baseline set their ``weighting``. ``gamma = 0`` gives (weighted) CE / BCE / LDAM.
    """

    def __init__(
        self,
        class_counts: Sequence[int],
        gamma: float = 2.0,
        variant: Literal["softmax", "sigmoid", "ldam"] = "softmax",
        reduction: ElementReduction = "normal",
        max_margin: float = 0.5,
        scale: float = 30.0,
        weighting: FocalWeighting = "mbit",
    ) -> None:
        super().__init__(class_counts)
        check_non_negative("gamma", gamma)
        check_choice("variant", variant, ("softmax", "sigmoid", "ldam"))
        check_choice("reduction", reduction, ("normal", "enlarge"))
        if reduction == "enlarge" and variant != "sigmoid":
            raise ConfigError("reduction: 'enlarge' applies to the sigmoid variant only (MBIT FOCAL.SIGMOID); use reduction: normal")
        check_choice("weighting", weighting, get_args(FocalWeighting))
        if weighting != "mbit" and variant != "softmax":
            raise ConfigError(f"weighting: {weighting!r} is the official form of a softmax focal loss; use variant: softmax, or weighting: mbit")
        self.gamma, self.variant, self.reduction, self.weighting = float(gamma), variant, reduction, weighting
        self.scale = float(scale)
        self.register_buffer("margins", ldam_margins(self.class_counts, float(max_margin)), persistent=False)

    def compute(self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor | None, sample_weight: torch.Tensor) -> torch.Tensor:
        if self.variant == "sigmoid":
            elements = sigmoid_focal_elements(logits, targets, self.gamma)
            return self.element_reduce(elements, targets, sample_weight, self.reduction)
        if self.weighting == "ldam_drw":  # p from the class-weighted CE; batch_mean applies w_y to the CE
            ce = cross_entropy_terms(logits, targets)
            return self.batch_mean(focal_modulator(self.sample_class_weights(targets) * ce, self.gamma) * ce, targets, sample_weight)
        if self.weighting == "cdb":  # true p, modulator detached
            ce = cross_entropy_terms(logits, targets)
            return self.batch_mean(focal_modulator(ce.detach(), self.gamma) * ce, targets, sample_weight)
        if self.variant == "ldam":
            logits = self.scale * subtract_target_margin(logits, targets, self.margins)
        return self.weighted_mean(softmax_focal_terms(logits, targets, self.gamma), targets, sample_weight)
