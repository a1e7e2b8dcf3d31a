"""CDB loss: class-wise difficulty-balanced loss (Sinha, Ohashi, Nakamura; ACCV 2020)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import ConfigError
from ..core.registry import LOSSES
from .base import LongTailLoss, check_choice, check_non_negative
from .functional import cross_entropy_terms, focal_modulator, sigmoid_signs
from .weighting import DynamicForm, cdb_weights, check_tau

CDBReduction = Literal["batch_mean", "weighted_mean"]
CDBFocalForm = Literal["softmax", "sigmoid"]


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

    ``reduction`` names the two forms of the official code (hitachi-rd-cv/CDB-loss):

    - ``batch_mean`` (default; CIFAR-LT and EGTEA ``losses/cdb_loss.py``: ``reduction='none'``, then
      the batch mean): ``sum_i s_i cdb_{y_i} w_{y_i} CE_i / N``;
    - ``weighted_mean`` (ImageNet-LT ``loss/CDBSoftmaxLoss.py``: ``nn.CrossEntropyLoss(weight=cdb)``):
      ``sum_i s_i cdb_{y_i} w_{y_i} CE_i / sum_i cdb_{y_i} w_{y_i}``, the denominator over the global
      batch under DDP. The two differ by the factor ``mean_i cdb_{y_i} w_{y_i}`` of the batch (below
      1 on long-tailed data, where the frequent, easier classes get the small weights).

    All weights are 1 before the first validation. ``tau``: a number or ``'dynamic'``
    (``dynamic_form`` ``imagenet`` = ``2 sigmoid(A_max/(A_min+0.01) - 1)``, canonical; ``cifar`` =
    ``sigmoid(A_max/(A_min+0.01))``). Deviation: difficulty is floored at ``eps`` so a perfectly
    classified class keeps a small weight instead of exactly 0.
    """

    def __init__(
        self,
        class_counts: Sequence[int],
        tau: float | str = "dynamic",
        dynamic_form: DynamicForm = "imagenet",
        eps: float = 0.01,
        reduction: CDBReduction = "batch_mean",
    ) -> None:
        super().__init__(class_counts)
        check_choice("reduction", reduction, get_args(CDBReduction))
        self.reduction = reduction
        self.difficulty = DifficultyWeights(self.num_classes, tau, dynamic_form, eps)
        self.register_buffer("cdb_weights", torch.ones(self.num_classes))

    def on_validation_end(self, per_class_accuracy: np.ndarray) -> None:
        w = self.difficulty.update(per_class_accuracy)
        self.cdb_weights.copy_(torch.as_tensor(w, dtype=torch.float32))

    def per_sample(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return cross_entropy_terms(logits, targets)

    def compute(self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor | None, sample_weight: torch.Tensor) -> torch.Tensor:
        reduce = self.weighted_mean if self.reduction == "weighted_mean" else self.batch_mean
        return reduce(self.per_sample(logits, targets), targets, sample_weight, extra=self.cdb_weights)


@LOSSES.register("cdb_focal")
class CDBFocal(CDBCrossEntropy):
    """CDB-Focal (Sinha et al., ACCV 2020): focal loss (softmax, or the official one-vs-all sigmoid) with the CDB weights as alpha.

    Same weights, updates and ``eps`` floor as ``cdb_ce``; always the batch mean
    ``sum_i s_i cdb_{y_i} w_{y_i} l_i / N``. ``form``:

    - ``sigmoid`` (the only official CDB-Focal: hitachi-rd-cv/CDB-loss ImageNet-LT
      ``loss/FocalLoss.py``, averaged over the batch in ``run_networks.py``):
      ``l_i = sum_c -(1 - q_ic)^gamma log q_ic`` with ``q_ic = sigmoid(+z_ic)`` at the target and
      ``sigmoid(-z_ic)`` elsewhere; the modulator ``(1 - q_ic)^gamma`` is detached (no gradient), as
      in the original;
    - ``softmax`` (default, kept for existing runs; not in the CDB code): ``l_i = (1 - p_i)^gamma CE_i``
      with the unweighted true-class probability ``p_i``, gradient through the modulator too.

    A recipe that reproduces the paper sets ``form: sigmoid``.
    """

    def __init__(
        self,
        class_counts: Sequence[int],
        tau: float | str = "dynamic",
        dynamic_form: DynamicForm = "imagenet",
        gamma: float = 1.0,
        eps: float = 0.01,
        form: CDBFocalForm = "softmax",
    ) -> None:
        super().__init__(class_counts, tau=tau, dynamic_form=dynamic_form, eps=eps)
        check_non_negative("gamma", gamma)
        check_choice("form", form, get_args(CDBFocalForm))
        self.gamma, self.form = float(gamma), form

    def per_sample(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.form == "sigmoid":
            sz = sigmoid_signs(logits, targets)
            nll = F.softplus(-sz)  # -log q, q = sigmoid(s z)
            if self.gamma == 0:
                return nll.sum(1)
            modulator = torch.exp(self.gamma * F.logsigmoid(-sz.detach()))  # (1 - q)^gamma, no gradient
            return (modulator * nll).sum(1)
        ce = cross_entropy_terms(logits, targets)
        return focal_modulator(ce, self.gamma) * ce
