"""SADE / TADE: three skill-diverse experts (Zhang et al., NeurIPS 2022), the loss of a multi-expert model.

Official form: Vanint/SADE-AgnosticLT ``model/loss.py`` ``DiverseExpertLoss``. With the training prior
``pi`` and per-expert logits ``z_1, z_2, z_3`` (already scaled by the model's ``s``):

- expert 1, the **forward** expert (good on a long-tailed test set like the training one): plain
  softmax CE on ``z_1``;
- expert 2, the **uniform** expert: balanced softmax, CE on ``z_2 + log pi``;
- expert 3, the **backward** expert (good on an inversely long-tailed test set): CE on
  ``z_3 + log pi - tau log pi_inv``, where ``pi_inv`` is the prior with its values reversed in rank
  order (the largest class gets the smallest frequency; the official ``inverse_prior``).

The loss is the sum of the three CE terms; each is a weighted mean under the schedule's class
weights (all 1 in the official recipe, so the plain mean). The official adds ``1e-9`` inside each
log, kept here. The model's aggregate is the mean of the experts' logits unless a test-time step sets
other expert weights (``ExpertHeads.set_expert_weights``, evaluation/test_time.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..core.errors import LongtailError
from ..core.registry import LOSSES
from .base import LongTailLoss, check_non_negative
from .functional import cross_entropy_terms

EXPERTS = ("forward", "uniform", "backward")  # the order of the model's experts this loss trains
LOG_EPS = 1e-9  # the official's guard inside every log


def inverse_prior(prior: torch.Tensor) -> torch.Tensor:
    """The prior's values reversed in rank order: the class with the k-th largest frequency gets the k-th smallest."""
    values, order = torch.sort(prior)
    rank = torch.argsort(order)  # rank[c]: the position of class c in ascending order
    return values[prior.numel() - 1 - rank]


def expert_shifts(class_counts: torch.Tensor, tau: float) -> torch.Tensor:
    """The logit shift each expert's CE sees, 3 x C: 0, ``log pi``, ``log pi - tau log pi_inv``."""
    prior = class_counts / class_counts.sum()
    log_prior = torch.log(prior + LOG_EPS)
    backward = log_prior - tau * torch.log(inverse_prior(prior) + LOG_EPS)
    return torch.stack([torch.zeros_like(log_prior), log_prior, backward])


@LOSSES.register("sade")
class SADELoss(LongTailLoss):
    """SADE (Zhang et al., NeurIPS 2022): forward (CE), uniform (balanced softmax), backward (inverse prior) experts."""

    needs_experts = True

    def __init__(self, class_counts: Sequence[int], tau: float = 2.0) -> None:
        super().__init__(class_counts)
        check_non_negative("tau", tau)
        self.tau = float(tau)
        self.register_buffer("shifts", expert_shifts(self.class_counts, self.tau), persistent=False)

    def compute(self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor | None, sample_weight: torch.Tensor,
                experts: torch.Tensor | None = None) -> torch.Tensor:
        assert experts is not None  # LongTailLoss.forward checks it for a needs_experts loss
        if experts.shape[1] != len(EXPERTS):
            raise LongtailError(f"loss 'sade' trains exactly {len(EXPERTS)} experts ({', '.join(EXPERTS)}), but the model has "
                                f"{experts.shape[1]}; set model.num_experts: 3")
        total = logits.new_zeros(())
        for e in range(len(EXPERTS)):
            terms = cross_entropy_terms(experts[:, e] + self.shifts[e], targets)
            total = total + self.weighted_mean(terms, targets, sample_weight)
        return total

