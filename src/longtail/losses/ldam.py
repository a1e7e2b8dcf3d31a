"""LDAM: label-distribution-aware margin loss (Cao et al., NeurIPS 2019)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..core.registry import LOSSES
from .base import LongTailLoss, check_non_negative
from .functional import cross_entropy_terms, ldam_margins, subtract_target_margin


@LOSSES.register("ldam")
class LDAMLoss(LongTailLoss):
    """LDAM (Cao et al., NeurIPS 2019): CE on scale * (z - m_y), margins proportional to n_c^(-1/4); cosine head.

    Meant for the cosine head (``model.head: cosine``: normalised features and weights, logits in
    [-1, 1]), hence the fixed ``scale`` (30). Class weights (DRW) act as PyTorch's weighted mean.
    ``max_margin = 0`` and ``scale = 1`` is plain CE.
    """

    def __init__(self, class_counts: Sequence[int], max_margin: float = 0.5, scale: float = 30.0) -> None:
        super().__init__(class_counts)
        check_non_negative("max_margin", max_margin)
        check_non_negative("scale", scale)
        self.max_margin, self.scale = float(max_margin), float(scale)
        self.register_buffer("margins", ldam_margins(self.class_counts, self.max_margin), persistent=False)

    def compute(self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor | None, sample_weight: torch.Tensor) -> torch.Tensor:
        z = self.scale * subtract_target_margin(logits, targets, self.margins)
        return self.weighted_mean(cross_entropy_terms(z, targets), targets, sample_weight)
