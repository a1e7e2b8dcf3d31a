"""GHM-C: gradient harmonizing classification loss (Li, Liu, Wang, AAAI 2019), as in MBIT."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..core.errors import ConfigError
from ..core.registry import LOSSES
from .base import LongTailLoss
from .functional import sigmoid_focal_elements


@LOSSES.register("ghmc")
class GHMCLoss(LongTailLoss):
    """GHM-C (Li et al., AAAI 2019): sigmoid BCE weighted by the inverse density of each gradient norm.

    ``g = |sigmoid(z) - onehot|`` per element, binned into ``bins`` equal bins of [0, 1]; an element
    in non-empty bin b gets ``N*C / count_b`` (or ``/ acc_b``, an EMA of counts, when
    ``momentum > 0``) divided by the number of non-empty bins. Loss
    ``sum(s_i w_{y_i} ghm_ij BCE_ij) / sum(w_{y_i} broadcast over C)``. The EMA is updated in
    training mode only, so validation batches never change the training weighting.
    """

    def __init__(self, class_counts: Sequence[int], bins: int = 10, momentum: float = 0.0) -> None:
        super().__init__(class_counts)
        if int(bins) < 1:
            raise ConfigError(f"bins: must be a positive integer, got {bins}")
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"momentum: must be in [0, 1), got {momentum}")
        self.bins, self.momentum = int(bins), float(momentum)
        self.register_buffer("inner_edges", torch.arange(1, self.bins, dtype=torch.float32) / self.bins, persistent=False)
        self.register_buffer("acc_sum", torch.zeros(self.bins))

    def harmonizing_weights(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The N x C GHM weights ``ghm_ij`` (no gradient flows through them)."""
        with torch.no_grad():
            onehot = F.one_hot(targets, self.num_classes).float()
            g = (torch.sigmoid(logits) - onehot).abs()
            index = torch.bucketize(g, self.inner_edges, right=True)  # edges[k] <= g < edges[k+1]
            counts = torch.bincount(index.flatten(), minlength=self.bins).float()
            density = counts
            if self.momentum > 0:
                updated = torch.where(counts > 0, self.momentum * self.acc_sum + (1 - self.momentum) * counts, self.acc_sum)
                if self.training:
                    self.acc_sum.copy_(updated)
                density = updated
            non_empty = (counts > 0).sum().clamp_min(1)
            return g.numel() / density[index] / non_empty

    def compute(self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor | None, sample_weight: torch.Tensor) -> torch.Tensor:
        elements = sigmoid_focal_elements(logits, targets, 0.0) * self.harmonizing_weights(logits, targets)
        return self.element_reduce(elements, targets, sample_weight, "normal")
