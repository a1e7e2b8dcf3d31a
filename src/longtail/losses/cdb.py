"""CDB loss: class-wise difficulty-balanced loss (Sinha, Ohashi, Nakamura; ACCV 2020)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..core.errors import ConfigError
from ..core.registry import LOSSES
from .base import LongTailLoss, check_non_negative
from .functional import cross_entropy_terms, focal_modulator
from .weighting import DynamicForm, cdb_weights, check_tau


class DifficultyWeights:
    """Holds CDB's per-class weights: all ones until the first validation, then :func:`cdb_weights`.

    Shared by the ``cdb_ce`` / ``cdb_focal`` losses and the ``cdb`` weight schedule.
    """

    def __init__(self, num_classes: int, tau: float | str = "dynamic", dynamic_form: DynamicForm = "imagenet", eps: float = 0.01) -> None:
        check_tau(tau)
        if dynamic_form not in ("imagenet", "cifar"):
            raise ConfigError(f"dynamic_form: must be 'imagenet' or 'cifar', got '{dynamic_form}'")
        if not 0 < eps <= 1:
            raise ConfigError(f"eps: the difficulty floor must be in (0, 1], got {eps}")
        self.num_classes, self.tau, self.dynamic_form, self.eps = num_classes, tau, dynamic_form, float(eps)
        self.weights: np.ndarray | None = None

    def update(self, per_class_accuracy: Sequence[float] | np.ndarray) -> np.ndarray:
        acc = np.asarray(per_class_accuracy, dtype=np.float64)
        if acc.shape != (self.num_classes,):
            raise ConfigError(f"cdb: need per-class accuracy for {self.num_classes} classes, got shape {acc.shape}")
        self.weights = cdb_weights(acc, self.tau, self.dynamic_form, self.eps)
        return self.weights


@LOSSES.register("cdb_ce")
class CDBCrossEntropy(LongTailLoss):
    """CDB-CE (Sinha et al., ACCV 2020): CE weighted by class difficulty (1 - val_acc)^tau, updated after every validation.

    ``sum_i s_i cdb_{y_i} w_{y_i} CE_i / N`` (the batch mean, not divided by the weight sum, as in
    the original). All weights are 1 before the first validation. ``tau``: a number or
    ``'dynamic'`` (``dynamic_form`` ``imagenet`` = ``2 sigmoid(A_max/(A_min+0.01) - 1)``, canonical;
    ``cifar`` = ``sigmoid(A_max/(A_min+0.01))``). Deviation: difficulty is floored at ``eps`` so a
    perfectly classified class keeps a small weight instead of exactly 0.
    """

    def __init__(
        self,
        class_counts: Sequence[int],
        tau: float | str = "dynamic",
        dynamic_form: DynamicForm = "imagenet",
        eps: float = 0.01,
    ) -> None:
        super().__init__(class_counts)
        self.difficulty = DifficultyWeights(self.num_classes, tau, dynamic_form, eps)
        self.register_buffer("cdb_weights", torch.ones(self.num_classes))

    def on_validation_end(self, per_class_accuracy: np.ndarray) -> None:
        w = self.difficulty.update(per_class_accuracy)
        self.cdb_weights.copy_(torch.as_tensor(w, dtype=torch.float32))

    def per_sample(self, ce: torch.Tensor) -> torch.Tensor:
        return ce

    def compute(self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor | None, sample_weight: torch.Tensor) -> torch.Tensor:
        ce = cross_entropy_terms(logits, targets)
        return self.batch_mean(self.per_sample(ce), targets, sample_weight, extra=self.cdb_weights)


@LOSSES.register("cdb_focal")
class CDBFocal(CDBCrossEntropy):
    """CDB-Focal (Sinha et al., ACCV 2020): softmax focal loss with the CDB difficulty weights as alpha.

    Same weights, updates and ``eps`` floor as ``cdb_ce``; ``p_t`` is the unweighted probability.
    """

    def __init__(
        self,
        class_counts: Sequence[int],
        tau: float | str = "dynamic",
        dynamic_form: DynamicForm = "imagenet",
        gamma: float = 1.0,
        eps: float = 0.01,
    ) -> None:
        super().__init__(class_counts, tau=tau, dynamic_form=dynamic_form, eps=eps)
        check_non_negative("gamma", gamma)
        self.gamma = float(gamma)

    def per_sample(self, ce: torch.Tensor) -> torch.Tensor:
        return focal_modulator(ce, self.gamma) * ce
