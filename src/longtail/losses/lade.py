"""LADE (Hong et al., CVPR 2021): PriorCE plus the label-distribution disentangling regulariser.

"Disentangling Label Distribution for Long-tailed Visual Recognition". With ``pi`` the training
prior (``n_c / sum n``), ``C`` classes and a batch of ``N`` images, ``m_c`` of them of class ``c``:

* **PriorCE** (the paper's LADE-CE): ``CE(z + log pi)``, the weighted mean of the loss contract.
  The same formula as balanced softmax (``log n`` and ``log pi`` differ by a constant per row).
* **LADE regulariser**: per class the Donsker-Varadhan bound of the KL divergence between the
  class-conditional and the balanced marginal, estimated on the batch, with ReMINE's penalty on
  the log-partition term::

      first_c  = sum_{i: y_i = c} z_ic / m_c                 (0 when the batch has no image of c)
      second_c = logsumexp_i (z_ic - log pi_c - log C) - log N
      R        = - sum_c pi_c (first_c - second_c - remine_lambda * second_c^2)

The loss is ``PriorCE + alpha * R``. At test time the raw logits are the prediction for a uniform
test prior; for a known test prior ``q`` the prediction is ``z + log q`` (``posthoc.logit_adjust``
with ``logit_adjust_from: uniform`` and ``target_prior: true``, see docs/methods.md).

Sample weights (label mixing) enter ``first_c`` per image and the label-free ``second_c`` terms as
the batch mean of the weights, so the loss stays linear in them; schedule class weights weight the
PriorCE term (``w_{y_i}``) only, the regulariser being weighted per class by ``pi_c`` already.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..core.errors import ConfigError
from ..core.registry import LOSSES
from .base import LongTailLoss, check_non_negative
from .functional import cross_entropy_terms


def lade_regularizer(
    logits: torch.Tensor,
    targets: torch.Tensor,
    prior: torch.Tensor,
    remine_lambda: float,
    sample_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """The LADE regulariser ``R`` of one batch (in the dtype of ``logits``; see the module docstring).

    ``prior`` is the training prior (C,), positive and summing to 1; ``sample_weight`` (N,) defaults
    to ones. With ones it is hyperconnect/LADE ``loss/LADELoss.py`` (which adds 1e-9 inside its
    logs and 1e-8 to the per-class counts: immaterial for positive priors, 0 for an absent class).
    """
    n, c = logits.shape
    onehot = torch.nn.functional.one_hot(targets, c).to(logits.dtype)  # N x C
    s = torch.ones(n, dtype=logits.dtype, device=logits.device) if sample_weight is None else sample_weight.to(logits.dtype)
    counts = onehot.sum(0).clamp_min(1.0)
    first = (onehot * s[:, None] * logits).sum(0) / counts
    log_prior = prior.to(logits.dtype).log()
    second = torch.logsumexp(logits - log_prior - math.log(c), dim=0) - math.log(n)
    label_free = (second + remine_lambda * second**2) * s.mean()
    return -(prior.to(logits.dtype) * (first - label_free)).sum()


@LOSSES.register("lade")
class LADELoss(LongTailLoss):
    """LADE (Hong et al., CVPR 2021): PriorCE CE(z + log prior) + alpha x the per-class Donsker-Varadhan regulariser."""

    def __init__(self, class_counts: Sequence[int], alpha: float = 0.1, remine_lambda: float = 0.1) -> None:
        super().__init__(class_counts)
        check_non_negative("alpha", alpha)
        check_non_negative("remine_lambda", remine_lambda)
        if not math.isfinite(alpha) or not math.isfinite(remine_lambda):
            raise ConfigError(f"alpha and remine_lambda must be finite, got {alpha} and {remine_lambda}")
        self.alpha, self.remine_lambda = float(alpha), float(remine_lambda)
        prior = self.class_counts / self.class_counts.sum()
        self.register_buffer("prior", prior, persistent=False)
        self.register_buffer("shift", prior.log(), persistent=False)

    def compute(self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor | None, sample_weight: torch.Tensor) -> torch.Tensor:
        prior_ce = self.weighted_mean(cross_entropy_terms(logits + self.shift, targets), targets, sample_weight)
        if self.alpha == 0:
            return prior_ce
        return prior_ce + self.alpha * lade_regularizer(logits, targets, self.prior, self.remine_lambda, sample_weight)
