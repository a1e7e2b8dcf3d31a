"""The loss contract every long-tail loss follows, plus the three reductions the seed systems use.

A loss gets training counts and its own hyper-parameters, never a config object, so it works
standalone. Per-class weights from a schedule (DRW, CLS, CDB, ...) arrive through
``set_class_weights`` and act as a per-sample factor ``w_{y_i}``. ``sample_weight`` multiplies
each sample's term in the numerator only, so label mixing is exactly
``L(z, ya, sample_weight=lam) + L(z, yb, sample_weight=1-lam) = lam*L(z, ya) + (1-lam)*L(z, yb)``.

Reductions (named after what the original code did, so each loss reproduces its paper):

- :meth:`LongTailLoss.weighted_mean`: ``sum_i s_i w_{y_i} l_i / sum_i w_{y_i}`` (PyTorch ``weight=``);
- :meth:`LongTailLoss.batch_mean`: ``sum_i s_i w_{y_i} l_i / N`` (HMLoss, CDB, IB, CB);
- :meth:`LongTailLoss.element_reduce`: for element-wise (N x C) sigmoid losses, ``normal`` =
  sum / sum of the row-broadcast weights, ``enlarge`` = mean over N x C times 30 (MBIT).

Logits and features are computed in float32 whatever their dtype (bfloat16 log-softmax is too
coarse for the small probabilities these losses weight), and the returned scalar is float32.

A loss that trains the experts of a multi-expert model (RIDE) sets ``needs_experts = True``: it is
called with ``experts=`` (N x E x C per-expert logits, ``logits`` being their aggregate) and its
``compute`` receives them as ``experts`` (float32). Every other loss sees the aggregate only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

from ..core import ranks as distributed
from ..core.errors import ConfigError, LongtailError
from .weighting import as_counts

ENLARGE_FACTOR = 30.0  # MBIT's fixed multiplier for the "enlarge" reduction
ElementReduction = Literal["normal", "enlarge"]


class LongTailLoss(nn.Module, ABC):
    """Base class: ``forward(logits, targets, features=None, sample_weight=None, experts=None) -> scalar``."""

    needs_features: bool = False
    #: True: ``forward`` needs ``experts`` (N x E x C) from a multi-expert model (models/experts.py)
    needs_experts: bool = False

    def __init__(self, class_counts: Sequence[int] | np.ndarray) -> None:
        super().__init__()
        counts = as_counts(class_counts, f"loss '{type(self).__name__}'")
        self.num_classes = int(counts.size)
        self.register_buffer("class_counts", torch.as_tensor(counts, dtype=torch.float32), persistent=False)
        self.register_buffer("class_weights", torch.ones(self.num_classes))

    # ------------------------------------------------------------------------------- hooks
    def set_class_weights(self, weights: torch.Tensor | np.ndarray | Sequence[float] | None) -> None:
        """Store per-class weights from a schedule (None = all ones); used as ``w_{y_i}``."""
        if weights is None:
            self.class_weights.fill_(1.0)
            return
        w = weights.detach().float().cpu() if isinstance(weights, torch.Tensor) else torch.as_tensor(np.asarray(weights, dtype=np.float32))
        if w.shape != (self.num_classes,):
            raise LongtailError(f"class weights must have one value per class ({self.num_classes}), got shape {tuple(w.shape)}")
        if not torch.all(torch.isfinite(w)) or torch.any(w < 0):
            raise LongtailError(f"class weights must be finite and non-negative, got {w.tolist()}")
        self.class_weights.copy_(w)

    def on_epoch_start(self, epoch: int, max_epoch: int) -> None:
        """Called by the engine at the start of every epoch (1-based ``epoch``)."""

    def on_validation_end(self, per_class_accuracy: np.ndarray) -> None:
        """Called by the engine after every validation with per-class accuracy in [0, 1]."""

    # ----------------------------------------------------------------------------- forward
    def forward(
        self,
        logits: torch.Tensor,
        targets: torch.Tensor,
        features: torch.Tensor | None = None,
        sample_weight: torch.Tensor | float | None = None,
        experts: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise LongtailError(
                f"{type(self).__name__}: logits must be N x {self.num_classes} (one column per class in class_counts), got {tuple(logits.shape)}"
            )
        if targets.shape != logits.shape[:1]:
            raise LongtailError(f"{type(self).__name__}: targets must have shape ({logits.shape[0]},) to match the logits, got {tuple(targets.shape)}")
        targets = targets.long()
        if targets.device.type == "cpu" and targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= self.num_classes):
            raise LongtailError(f"{type(self).__name__}: targets must be class indices in [0, {self.num_classes - 1}], got {targets.min()}..{targets.max()}")
        if self.needs_features:
            if features is None:
                raise LongtailError(f"loss '{type(self).__name__}' needs penultimate features: call it as loss(logits, targets, features)")
            features = features.float().flatten(1)
        if self.needs_experts:
            per_expert = self._experts(experts, logits)
            return self.compute(logits.float(), targets, features, self._sample_weight(sample_weight, logits), experts=per_expert)  # type: ignore[call-arg]
        return self.compute(logits.float(), targets, features, self._sample_weight(sample_weight, logits))

    @abstractmethod
    def compute(self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor | None, sample_weight: torch.Tensor) -> torch.Tensor:
        """The loss proper: float32 ``logits`` (N x C), long ``targets``, ``sample_weight`` (N,); a ``needs_experts``
        loss also takes the keyword ``experts`` (float32, N x E x C)."""

    def _experts(self, experts: torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor:
        """The per-expert logits of a ``needs_experts`` loss, checked against the logits and cast to float32."""
        name = type(self).__name__
        if experts is None:
            raise LongtailError(f"loss '{name}' trains the experts of a multi-expert model: call it as loss(logits, targets, "
                                "experts=per_expert_logits) with the N x E x C logits of model(x, return_experts=True)")
        n = logits.shape[0]
        if experts.ndim != 3 or experts.shape[0] != n or experts.shape[2] != self.num_classes or experts.shape[1] < 1:
            raise LongtailError(f"{name}: experts must be N x E x {self.num_classes} with N = {n} (one row of logits per expert), got {tuple(experts.shape)}")
        return experts.float()

    @staticmethod
    def _sample_weight(sample_weight: torch.Tensor | float | None, logits: torch.Tensor) -> torch.Tensor:
        n = logits.shape[0]
        if sample_weight is None:
            return torch.ones(n, device=logits.device)
        s = torch.as_tensor(sample_weight, dtype=torch.float32, device=logits.device)
        if s.ndim == 0:
            return s.expand(n)
        if s.shape != (n,):
            raise LongtailError(f"sample_weight must be a scalar or have shape ({n},), got {tuple(s.shape)}")
        return s

    # --------------------------------------------------------------------------- reductions
    def weighted_mean(self, per_sample: torch.Tensor, targets: torch.Tensor, sample_weight: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """``sum_i s_i w_i l_i / sum_i w_i`` with ``w_i = w_{y_i}`` (times ``extra`` class weights if given).

        Under DDP the denominator is the global batch's (its mean over the ranks), so that DDP's
        gradient average is the weighted mean over the global batch, as in one process."""
        w = self.sample_class_weights(targets, extra)
        return (sample_weight * w * per_sample).sum() / distributed.mean_over_ranks(w.sum()).clamp_min(1e-12)

    def batch_mean(self, per_sample: torch.Tensor, targets: torch.Tensor, sample_weight: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """``sum_i s_i w_i l_i / N`` (the batch mean of an already weighted per-sample loss)."""
        w = self.sample_class_weights(targets, extra)
        return (sample_weight * w * per_sample).sum() / max(per_sample.shape[0], 1)

    def element_reduce(
        self, elements: torch.Tensor, targets: torch.Tensor, sample_weight: torch.Tensor, reduction: ElementReduction, extra: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Reduce an N x C element-wise loss whose rows are weighted by ``w_{y_i}`` (MBIT sigmoid losses)."""
        w = self.sample_class_weights(targets, extra)
        numerator = (sample_weight * w * elements.sum(1)).sum()
        if reduction == "enlarge":
            return numerator / elements.numel() * ENLARGE_FACTOR
        return numerator / (distributed.mean_over_ranks(w.sum()) * elements.shape[1]).clamp_min(1e-12)

    def sample_class_weights(self, targets: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """``w_{y_i}`` per sample from the schedule's class weights (times a loss's own weights)."""
        w = self.class_weights if extra is None else self.class_weights * extra
        return w[targets]


def check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    """One-line ConfigError when a string option is not one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{name}: must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")


def check_non_negative(name: str, value: float) -> None:
    if not value >= 0:
        raise ConfigError(f"{name}: must be >= 0, got {value}")
