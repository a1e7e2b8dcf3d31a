"""BCL: balanced contrastive learning (Zhu, Wang, Chen, Chen, Jiang; CVPR 2022), the loss of method ``bcl``.

Official form: FlamieZhu/Balanced-Contrastive-Learning ``main.py`` ``alpha * ce_loss + beta * scl_loss`` with
``loss/logitadjust.py`` ``LogitAdjust`` (CE on ``z + tau log pi``) on the classification view's logits and
``loss/contrastive.py`` ``BalSCL`` on the contrastive views' projections and the class centres. For anchor i
(one view of one image; V views of N images give M = V N anchors) with unit projection ``a_i`` and class
``y_i``, the bank B holds the M anchors and the C unit class centres (class c's centre labelled c, the
"class-complement" that puts every class in every batch); ``n_c`` counts class c in B (``V n_c^batch + 1``):

    l_i = -1/|P(i)| sum_{p in P(i)} [ a_i.b_p / T - log sum_{j in B, j != i} exp(a_i.b_j / T) / (n_{y_j} - [y_j = y_i]) ]

with P(i) the bank entries of class y_i other than i (its other views, same-class images, its centre). Each
other entry's exponential is divided by how many entries of its class the anchor sees ("class-averaging"),
so every class weighs the same in the denominator whatever its share of the batch. BalSCL's value is the
mean over the M anchors.

In longtail's terms: ``alpha * sum_i s_i w_{y_i} CE_i(scale z + tau log pi) / sum_i w_{y_i}`` (LogitAdjust's
``F.cross_entropy(weight=w)``, the schedule's class weights, ``scale`` multiplying a cosine head's logits as
BCLModel's ``NormedLinear`` s = 30 does inside its model) plus ``beta * sum_i s_{img(i)} l_i / M``: a
sample weight multiplies its image's anchors; class weights act on the CE term only (BalSCL takes none and
is class-balanced by construction).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..core.errors import ConfigError, LongtailError
from ..core.registry import LOSSES
from .base import LongTailLoss, check_non_negative
from .functional import cross_entropy_terms


def balanced_contrastive_terms(projections: torch.Tensor, centers: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """BalSCL's per-anchor loss ``l_i`` (M = V N values, view-major: view 0's N anchors, then view 1's ...).

    ``projections``: N x V x d unit vectors (V views of each image); ``centers``: C x d unit class centres;
    ``targets``: N class indices. Written with a masked logsumexp; BalSCL's row-max shift cancels out.
    """
    n, v, _ = projections.shape
    c = centers.shape[0]
    m = n * v
    anchors = projections.transpose(0, 1).reshape(m, -1)
    bank = torch.cat([anchors, centers])
    labels = torch.cat([targets.repeat(v), torch.arange(c, device=targets.device)])
    counts = torch.bincount(labels, minlength=c).to(anchors.dtype)  # per class in the bank: V n_c + 1 >= 1
    sim = anchors @ bank.T / temperature  # M x (M + C)
    is_self = torch.zeros_like(sim, dtype=torch.bool)
    is_self[:, :m] = torch.eye(m, dtype=torch.bool, device=sim.device)
    positive = (labels[:m, None] == labels[None, :]) & ~is_self
    # class-averaging: entry j counts 1 / (its class's entries the anchor sees), the anchor left out of its own class
    share = counts[labels][None, :] - positive.to(sim.dtype)
    log_denominator = torch.logsumexp((sim - share.log()).masked_fill(is_self, float("-inf")), dim=1)
    log_prob = sim - log_denominator[:, None]
    return -(log_prob * positive).sum(1) / positive.sum(1)


@LOSSES.register("bcl")
class BCLLoss(LongTailLoss):
    """BCL (Zhu et al., CVPR 2022): alpha * logit-adjusted CE + beta * balanced contrastive loss; needs method bcl."""

    #: True: ``forward`` needs ``projections`` (N x V x d) and ``centers`` (C x d) from ``model(x, return_contrast=True)``
    needs_contrast = True

    def __init__(self, class_counts: Sequence[int], alpha: float = 1.0, beta: float = 0.35, temperature: float = 0.07,
                 tau: float = 1.0, scale: float = 1.0) -> None:
        super().__init__(class_counts)
        check_non_negative("alpha", alpha)
        check_non_negative("beta", beta)
        check_non_negative("tau", tau)
        if not temperature > 0:
            raise ConfigError(f"temperature: the contrastive temperature must be > 0 (BCL's 0.07 or 0.1), got {temperature}")
        if not scale > 0:
            raise ConfigError(f"scale: the logit scale must be > 0 (1 for a linear head, 30 for model.head=cosine as BCL's NormedLinear), got {scale}")
        self.alpha, self.beta, self.temperature = float(alpha), float(beta), float(temperature)
        self.tau, self.scale = float(tau), float(scale)
        prior = self.class_counts / self.class_counts.sum()
        self.register_buffer("shift", self.tau * prior.log(), persistent=False)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor | None = None,
                sample_weight: torch.Tensor | float | None = None, experts: torch.Tensor | None = None,
                projections: torch.Tensor | None = None, centers: torch.Tensor | None = None) -> torch.Tensor:
        """The CE term through the base class's checks, plus ``beta`` times BalSCL on ``projections`` and ``centers``."""
        ce = super().forward(logits, targets, features, sample_weight, experts)
        projections, centers = self._contrast_inputs(projections, centers, logits.shape[0])
        weight = self._sample_weight(sample_weight, logits)
        with torch.autocast(device_type=projections.device.type, enabled=False):  # the similarities in float32
            terms = balanced_contrastive_terms(projections, centers, targets.long(), self.temperature)
        n, v = projections.shape[:2]
        contrast = (terms.view(v, n) * weight[None, :]).sum() / max(n * v, 1)
        return ce + self.beta * contrast

    def compute(self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor | None, sample_weight: torch.Tensor) -> torch.Tensor:
        """``alpha`` times LogitAdjust's CE as a weighted mean."""
        adjusted = self.scale * logits + self.shift
        return self.alpha * self.weighted_mean(cross_entropy_terms(adjusted, targets), targets, sample_weight)

    def _contrast_inputs(self, projections: torch.Tensor | None, centers: torch.Tensor | None, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The projections (N x V x d) and centres (C x d), checked and cast to float32."""
        if projections is None or centers is None:
            raise ConfigError("loss 'bcl' needs the contrastive views and class centres that method bcl gives it; set method: {name: bcl} "
                              "and model.contrastive: {dim: 128} (standalone: loss(logits, targets, projections=..., centers=...))")
        if projections.ndim != 3 or projections.shape[0] != n or projections.shape[1] < 1:
            raise LongtailError(f"BCLLoss: projections must be N x V x d with N = {n} (V views of each image), got {tuple(projections.shape)}")
        if centers.shape != (self.num_classes, projections.shape[2]):
            raise LongtailError(f"BCLLoss: centers must be {self.num_classes} x {projections.shape[2]} (one per class, as wide as the projections), "
                                f"got {tuple(centers.shape)}")
        return projections.float(), centers.float()
