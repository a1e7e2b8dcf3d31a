"""RIDE: distribution-aware diverse experts (Wang et al., ICLR 2021), the loss of a multi-expert model.

Official form: frank-xwang/RIDE-LongTailRecognition ``model/loss.py`` ``RIDELoss``. For each expert e with
logits ``z_e`` (already scaled by the model's ``s``) and the aggregate ``z = mean_e z_e``:

- the distribution-aware term ``base_loss_factor * CE(z_e - s m_y onehot(y))`` with LDAM margins
  ``m_c ∝ n_c^(-1/4)`` (largest ``max_margin``), class-weighted by the schedule (DRW) as a weighted mean;
- the diversity term ``additional_diversity_factor * mean(T)^2 * KL(softmax(z / T) || softmax(z_e / T))``
  (batch mean, the aggregate detached), with ``T = temperature`` or, while the schedule re-weights,
  the per-class ``T_c = temperature * w_c``, ``w_c = (C pi_c r + 1 - r) / max_k (C pi_k r + 1 - r)``.

A negative diversity factor (the official -0.2) pushes each expert away from the ensemble. The official
switches the class weights and the per-class temperature on at the same epoch (``reweight_epoch``); here
the temperature follows the class-weight schedule: per-class while its weights are not all 1 (DRW's
re-weighted epochs), so one ``class_weights: drw`` entry times both.

``ride_router`` is the official second stage (``model/ldam_drw_resnets/ea_resnet_cifar.py``): BCE with
``pos_weight`` on each router's logit (models/router.py), the target being "the running prediction after
this expert is wrong and a later expert's is right"; it runs in a stage with ``train_only: router``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import ConfigError, LongtailError
from ..core.registry import LOSSES
from .base import LongTailLoss, check_non_negative
from .functional import cross_entropy_terms, ldam_margins, subtract_target_margin


def diversity_weights(class_counts: Sequence[int] | np.ndarray, reweight_factor: float) -> np.ndarray:
    """RIDE's per-class temperature factors ``(C pi_c r + 1 - r) / max``: 1 for the largest class, smaller for rarer ones."""
    counts = np.asarray(class_counts, dtype=np.float64)
    prior = counts / counts.sum()
    w = counts.size * prior * reweight_factor + 1.0 - reweight_factor
    w = w / w.max()
    if not np.all(w > 0):
        raise ConfigError(f"reweight_factor={reweight_factor} makes a diversity temperature non-positive; use a value in [0, 1]")
    return w


@LOSSES.register("ride")
class RIDELoss(LongTailLoss):
    """RIDE (Wang et al., ICLR 2021): per-expert LDAM-DRW plus a diversity KL to the aggregate; needs ride_resnet32."""

    needs_experts = True

    def __init__(
        self,
        class_counts: Sequence[int],
        max_margin: float = 0.5,
        scale: float = 30.0,
        base_loss_factor: float = 1.0,
        additional_diversity_factor: float = -0.2,
        temperature: float = 1.0,
        reweight_factor: float = 0.05,
    ) -> None:
        super().__init__(class_counts)
        check_non_negative("max_margin", max_margin)
        check_non_negative("base_loss_factor", base_loss_factor)
        if not scale > 0:
            raise ConfigError(f"scale: the model's logit scale (ride_resnet32 scale, 30) must be > 0, got {scale}")
        if not temperature > 0:
            raise ConfigError(f"temperature: must be > 0, got {temperature}")
        check_non_negative("reweight_factor", reweight_factor)
        self.max_margin, self.scale = float(max_margin), float(scale)
        self.base_loss_factor = float(base_loss_factor)
        self.additional_diversity_factor = float(additional_diversity_factor)
        self.temperature, self.reweight_factor = float(temperature), float(reweight_factor)
        # the margin in logit units: the model's logits are s * cos, so the official subtracts s * m_y
        self.register_buffer("margins", self.scale * ldam_margins(self.class_counts, self.max_margin), persistent=False)
        w = torch.as_tensor(diversity_weights(self.class_counts.numpy(), self.reweight_factor), dtype=torch.float32)
        self.register_buffer("diversity_weights", w, persistent=False)

    def temperatures(self) -> torch.Tensor:
        """Per-class diversity temperatures (C,): distribution-aware while the schedule's weights are not all 1."""
        reweighting = (self.class_weights != 1).any()
        return self.temperature * torch.where(reweighting, self.diversity_weights, torch.ones_like(self.diversity_weights))

    def compute(self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor | None, sample_weight: torch.Tensor,
                experts: torch.Tensor | None = None) -> torch.Tensor:
        assert experts is not None  # LongTailLoss.forward checks it for a needs_experts loss
        t = self.temperatures()
        # the ensemble's softened distribution is a target: no gradient (the official's torch.no_grad)
        aggregate = logits.detach() / t
        target_log = F.log_softmax(aggregate, dim=1)
        target = target_log.exp()
        total = logits.new_zeros(())
        for e in range(experts.shape[1]):
            z_e = experts[:, e]
            # the official trains each expert on the aggregate instead when the diversity factor is 0
            base_logits = logits if self.additional_diversity_factor == 0 else z_e
            margined = subtract_target_margin(base_logits, targets, self.margins)
            total = total + self.base_loss_factor * self.weighted_mean(cross_entropy_terms(margined, targets), targets, sample_weight)
            kl = (target * (target_log - F.log_softmax(z_e / t, dim=1))).sum(1)  # KL(aggregate || expert) per image
            total = total + self.additional_diversity_factor * t.mean() ** 2 * (sample_weight * kl).sum() / max(kl.shape[0], 1)
        return total


def router_targets(experts: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """N x (E - 1) booleans: router i's target, "the running prediction after expert i is wrong and a later one is right".

    The official ``expert_help_target = ~correctness[:, i] & correctness[:, i+1:].any(dim=1)``, with
    ``correctness[:, i]`` whether the summed logits of experts ``0..i`` (the running mean's argmax) are right."""
    correct = experts.cumsum(dim=1).argmax(dim=2) == targets[:, None]  # N x E
    later = correct.flip(1).cumsum(1).flip(1) > 0  # later[:, i]: some expert j >= i is right
    return ~correct[:, :-1] & later[:, 1:]


@LOSSES.register("ride_router")
class RIDERouterLoss(LongTailLoss):
    """RIDE's expert-assignment stage: BCE on whether later experts correct the running prediction; train_only: router."""

    needs_experts = True
    #: True: ``forward`` needs ``router`` (N x (E - 1) router logits, ``ExpertOutput.router``)
    needs_router = True

    def __init__(self, class_counts: Sequence[int], pos_weight: float = 100.0) -> None:
        super().__init__(class_counts)
        if not pos_weight > 0:
            raise ConfigError(f"pos_weight: the weight of the 'consult the next expert' cases must be > 0 (RIDE's CIFAR value: 100), got {pos_weight}")
        self.pos_weight = float(pos_weight)
        self._router: torch.Tensor | None = None  # the call's router logits, for compute (forward sets them)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor | None = None,
                sample_weight: torch.Tensor | float | None = None, experts: torch.Tensor | None = None,
                router: torch.Tensor | None = None) -> torch.Tensor:
        if router is None:
            raise ConfigError("loss 'ride_router' trains RIDE's router: use it in a stage with train_only: router on a model with "
                              "model.router: true (standalone: loss(logits, targets, experts=..., router=...))")
        if experts is not None and (router.ndim != 2 or router.shape != (logits.shape[0], experts.shape[1] - 1)):
            raise LongtailError(f"RIDERouterLoss: router logits must be N x (E - 1) = {logits.shape[0]} x {experts.shape[1] - 1}, got {tuple(router.shape)}")
        self._router = router.float()
        try:
            return super().forward(logits, targets, features, sample_weight, experts)
        finally:
            self._router = None

    def compute(self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor | None, sample_weight: torch.Tensor,
                experts: torch.Tensor | None = None) -> torch.Tensor:
        assert experts is not None and self._router is not None  # forward checks both
        wanted = router_targets(experts.detach(), targets).to(self._router.dtype)
        pos_weight = self._router.new_tensor(self.pos_weight)
        terms = F.binary_cross_entropy_with_logits(self._router, wanted, pos_weight=pos_weight, reduction="none")  # N x (E - 1)
        # each router's weighted mean (the plain batch mean of the official under uniform class weights), then their mean
        per_router = [self.weighted_mean(terms[:, i], targets, sample_weight) for i in range(terms.shape[1])]
        return torch.stack(per_router).mean()
