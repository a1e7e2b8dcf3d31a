"""LOW: learning optimal sample weights (Santiago, Barata, Sasdelli, Carneiro, Nascimento; Pattern Recognition 2021)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..core.errors import ConfigError
from ..core.registry import LOSSES
from .base import LongTailLoss
from .functional import cross_entropy_terms


def project_to_simplex(v: torch.Tensor, total: float) -> torch.Tensor:
    """Euclidean projection of ``v`` onto ``{w >= 0, sum w = total}`` (sort-based, O(N log N), exact).

    With ``u`` = ``v`` sorted descending, ``rho`` = the largest k with
    ``u_k > (sum_{j<=k} u_j - total) / k``; then ``w = max(v - theta, 0)`` with
    ``theta = (sum_{j<=rho} u_j - total) / rho`` (Held, Wolfe, Crowder 1974; Duchi et al. 2008).
    Runs on the tensor's device without a host sync.
    """
    u, _ = torch.sort(v, descending=True)
    css = torch.cumsum(u, 0)
    k = torch.arange(1, v.numel() + 1, device=v.device, dtype=v.dtype)
    support = u - (css - total) / k > 0
    rho = torch.where(support, k, torch.zeros_like(k)).max()
    theta = (css[rho.long() - 1] - total) / rho
    return (v - theta).clamp_min(0)


def low_sample_weights(logits: torch.Tensor, targets: torch.Tensor, lamb: float) -> torch.Tensor:
    """The exact solution of LOW's QP for one batch.

    ``min_w lamb*||w||^2 - sum_i (g_i^2 + lamb) w_i  s.t. w >= 0, sum w = N`` with
    ``g_i = ||d mean(CE) / d z_i||_2 = ||softmax(z_i) - onehot(y_i)||_2 / N``. Completing the square,
    the objective is ``lamb * ||w - a||^2 + const`` with ``a_i = (g_i^2 + lamb) / (2 lamb)``, so the
    solution is the projection of ``a`` onto the scaled simplex: no QP solver (MBIT used cvxopt for
    20 interior-point iterations at tolerance 1e-4) and no approximation.
    """
    with torch.no_grad():
        n = logits.shape[0]
        residual = torch.softmax(logits, 1) - F.one_hot(targets, logits.shape[1]).to(logits.dtype)
        g2 = residual.pow(2).sum(1) / (n * n)
        return project_to_simplex((g2 + lamb) / (2.0 * lamb), float(n))


@LOSSES.register("low")
class LOWLoss(LongTailLoss):
    """LOW (Santiago et al., PR 2021): per-batch optimal sample weights (exact QP) times weighted CE.

    Training: ``sum_i s_i w_{y_i} low_i CE_i / sum_i w_{y_i}`` with ``low`` from
    :func:`low_sample_weights` (solved exactly by a simplex projection instead of cvxopt; the
    gradient norms use the unweighted CE). Evaluation mode: plain weighted CE.
    """

    def __init__(self, class_counts: Sequence[int], lamb: float = 0.01) -> None:
        super().__init__(class_counts)
        if not lamb > 0:
            raise ConfigError(f"lamb: must be > 0 (it is the QP's regulariser), got {lamb}")
        self.lamb = float(lamb)

    def compute(self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor | None, sample_weight: torch.Tensor) -> torch.Tensor:
        ce = cross_entropy_terms(logits, targets)
        if self.training:
            ce = ce * low_sample_weights(logits, targets, self.lamb)
        return self.weighted_mean(ce, targets, sample_weight)
