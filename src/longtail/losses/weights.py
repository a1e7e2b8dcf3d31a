"""Per-class weight schedules: what ``w_c`` a loss uses in each epoch.

The engine calls ``weights(epoch, max_epoch)`` at the start of every epoch, with **1-based**
epochs (the first epoch of a stage is 1, the last is ``max_epoch``), and hands the result to
``loss.set_class_weights`` (None = uniform). Schedules driven by validation (CDB) also get
``on_validation_end(per_class_accuracy)``. All weights are normalised to sum C unless a
schedule says otherwise, so ``w_c = 1`` means "as much as an average class".
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from ..core.errors import ConfigError
from ..core.registry import WEIGHTS
from .cdb import DifficultyWeights
from .weighting import DynamicForm, as_counts, effective_number_weights, inverse_frequency_weights, normalize_to_sum, spbl_cost_vector


class WeightSchedule(ABC):
    """Base: built from ``class_counts`` and parameters; ``weights(epoch, max_epoch)`` per epoch."""

    def __init__(self, class_counts: Sequence[int] | np.ndarray) -> None:
        self.class_counts = as_counts(class_counts, f"class_weights '{type(self).__name__}'")
        self.num_classes = int(self.class_counts.size)

    @abstractmethod
    def weights(self, epoch: int, max_epoch: int) -> np.ndarray | None:
        """Per-class weights for 1-based ``epoch`` of ``max_epoch``, or None for uniform."""

    def on_validation_end(self, per_class_accuracy: np.ndarray) -> None:
        """Validation feedback (per-class accuracy in [0, 1]); most schedules ignore it."""

    def state_dict(self) -> dict[str, Any]:
        """State that must survive a resume (only validation-driven schedules have any)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


@WEIGHTS.register("uniform")
class Uniform(WeightSchedule):
    """All classes weigh 1 (MBIT default)."""

    def weights(self, epoch: int, max_epoch: int) -> np.ndarray | None:
        return None


@WEIGHTS.register("inverse_frequency")
class InverseFrequency(WeightSchedule):
    """Inverse frequency (extra_c / n_c)^power, normalised to sum C (MBIT re_weight, HMLoss CS).

    MBIT recipes use ``power`` 1.0-1.2 (its default WEIGHT_POWER is 1.1); HMLoss CS is power 1.
    ``extra``: optional per-class multipliers (MBIT EXTRA_WEIGHT).
    """

    def __init__(self, class_counts: Sequence[int], power: float = 1.0, extra: Sequence[float] | None = None) -> None:
        super().__init__(class_counts)
        self.power, self.extra = float(power), extra
        self._w = inverse_frequency_weights(self.class_counts, self.power, extra)

    def weights(self, epoch: int, max_epoch: int) -> np.ndarray | None:
        return self._w


@WEIGHTS.register("effective_number")
class EffectiveNumber(WeightSchedule):
    """Effective-number weights (1 - beta) / (1 - beta^n_c), normalised to sum C (HMLoss CB, CDB CB_*)."""

    def __init__(self, class_counts: Sequence[int], beta: float = 0.9999) -> None:
        super().__init__(class_counts)
        self.beta = float(beta)
        self._w = effective_number_weights(self.class_counts, self.beta)

    def weights(self, epoch: int, max_epoch: int) -> np.ndarray | None:
        return self._w


@WEIGHTS.register("drw")
class DeferredReweighting(WeightSchedule):
    """Deferred re-weighting (LDAM-DRW): uniform, then inverse-frequency or effective-number weights.

    Epochs are 1-based and ``start_epoch`` is the first re-weighted epoch (MBIT: ``e >= DRW_EPOCH``).
    LDAM-DRW's 0-based ``epoch // 160`` re-weights from 1-based epoch 161. ``start_epoch: null``
    (default) re-weights the last 20% of the stage: ``floor(0.8 * max_epoch) + 1`` (161 of 200).
    ``kind``: ``effective_number`` (``beta``, LDAM-DRW) or ``inverse_frequency`` (``power``, ``extra``; MBIT).
    """

    def __init__(
        self,
        class_counts: Sequence[int],
        start_epoch: int | None = None,
        kind: Literal["effective_number", "inverse_frequency"] = "effective_number",
        beta: float = 0.9999,
        power: float = 1.0,
        extra: Sequence[float] | None = None,
    ) -> None:
        super().__init__(class_counts)
        if start_epoch is not None and int(start_epoch) < 1:
            raise ConfigError(f"start_epoch: epochs are 1-based, so it must be >= 1, got {start_epoch}")
        if kind == "effective_number":
            self._w = effective_number_weights(self.class_counts, beta)
        elif kind == "inverse_frequency":
            self._w = inverse_frequency_weights(self.class_counts, power, extra)
        else:
            raise ConfigError(f"kind: must be 'effective_number' or 'inverse_frequency', got '{kind}'")
        self.start_epoch, self.kind = start_epoch, kind

    def first_reweighted_epoch(self, max_epoch: int) -> int:
        """The 1-based epoch from which weights apply."""
        return int(self.start_epoch) if self.start_epoch is not None else int(0.8 * max_epoch) + 1

    def weights(self, epoch: int, max_epoch: int) -> np.ndarray | None:
        return self._w if epoch >= self.first_reweighted_epoch(max_epoch) else None


@WEIGHTS.register("cls")
class CumulativeLearning(WeightSchedule):
    """MBIT cumulative learning: (1/n_c)^P(e) with P(e) ramping quadratically from 0 to power.

    ``P(e) = 0`` for ``e <= start_epoch``; ``power * ((e - start) / (end - start))^2`` in between;
    ``power`` for ``e >= end_epoch`` (1-based epochs; MBIT: 20 and 60 of 70, power 1.1-1.2).
    Normalised to sum C.
    """

    def __init__(
        self,
        class_counts: Sequence[int],
        power: float = 1.1,
        start_epoch: int = 20,
        end_epoch: int = 60,
        extra: Sequence[float] | None = None,
    ) -> None:
        super().__init__(class_counts)
        if not 0 <= start_epoch < end_epoch:
            raise ConfigError(f"cls: need 0 <= start_epoch < end_epoch, got start_epoch={start_epoch}, end_epoch={end_epoch}")
        self.power, self.start_epoch, self.end_epoch, self.extra = float(power), int(start_epoch), int(end_epoch), extra
        inverse_frequency_weights(self.class_counts, 1.0, extra)  # validate extra once, at build time

    def power_at(self, epoch: int) -> float:
        """The exponent ``P(e)`` used in 1-based epoch ``epoch``."""
        if epoch <= self.start_epoch:
            return 0.0
        if epoch >= self.end_epoch:
            return self.power
        return self.power * ((epoch - self.start_epoch) / (self.end_epoch - self.start_epoch)) ** 2

    def weights(self, epoch: int, max_epoch: int) -> np.ndarray | None:
        return inverse_frequency_weights(self.class_counts, self.power_at(epoch), self.extra)


@WEIGHTS.register("cdb")
class ClassDifficulty(WeightSchedule):
    """CDB difficulty weights (1 - val_acc)^tau, normalised to sum C, refreshed after every validation.

    Uniform until the first validation. Same formula and code as the ``cdb_ce`` loss
    (:class:`~longtail.losses.cdb.DifficultyWeights`), so any loss can be difficulty-balanced.
    """

    def __init__(self, class_counts: Sequence[int], tau: float | str = "dynamic", dynamic_form: DynamicForm = "imagenet", eps: float = 0.01) -> None:
        super().__init__(class_counts)
        self.difficulty = DifficultyWeights(self.num_classes, tau, dynamic_form, eps)

    def on_validation_end(self, per_class_accuracy: np.ndarray) -> None:
        self.difficulty.update(per_class_accuracy)

    def weights(self, epoch: int, max_epoch: int) -> np.ndarray | None:
        return self.difficulty.weights

    def state_dict(self) -> dict[str, Any]:
        w = self.difficulty.weights
        return {"weights": None if w is None else w.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        w = state.get("weights")
        self.difficulty.weights = None if w is None else np.asarray(w, dtype=np.float64)


@WEIGHTS.register("spbl_cost")
class SPBLCost(WeightSchedule):
    """SPBL consistent cost vector: random costs in [1, 10], largest for the class with the smallest complexity H.

    Uses :func:`~longtail.losses.weighting.spbl_cost_vector`. SPBL's complexity is
    ``H_c = |U_c| / exp(mean -log p)`` from a first-pace model; without one, ``complexity``
    defaults to the class counts (larger H = more samples = smaller cost), a documented proxy.
    Raw costs (min 1) unless ``normalize`` rescales them to sum C. Constant over epochs.
    """

    def __init__(
        self,
        class_counts: Sequence[int],
        seed: int = 0,
        max_value: float = 10.0,
        complexity: Sequence[float] | None = None,
        normalize: bool = False,
    ) -> None:
        super().__init__(class_counts)
        h = self.class_counts if complexity is None else np.asarray(complexity, dtype=np.float64)
        if h.shape != (self.num_classes,):
            raise ConfigError(f"complexity: need one value per class ({self.num_classes}), got {np.asarray(complexity).tolist()}")
        costs = spbl_cost_vector(h, seed=seed, max_value=max_value)
        self._w = normalize_to_sum(costs) if normalize else costs

    def weights(self, epoch: int, max_epoch: int) -> np.ndarray | None:
        return self._w
