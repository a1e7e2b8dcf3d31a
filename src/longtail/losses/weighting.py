"""Per-class weight formulas (NumPy), shared by the losses and the weight schedules.

Every function here is a pure function of class counts or validation accuracy, so a loss that
bakes a weighting in (``cb``, ``cdb_ce``) and a schedule that hands it to any loss (``effective_number``,
``cdb``) compute exactly the same numbers from one implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from ..core.errors import ConfigError, LongtailError

DynamicForm = Literal["imagenet", "cifar"]


def as_counts(class_counts: Sequence[int] | np.ndarray, who: str = "loss") -> np.ndarray:
    """Validate training counts per class: 1-D, at least two classes, every class non-empty."""
    counts = np.asarray(class_counts)
    if counts.ndim != 1 or counts.size < 2:
        raise LongtailError(f"{who}: class_counts must be a 1-D sequence with one count per class (at least 2), got shape {counts.shape}")
    if not np.all(np.isfinite(counts.astype(np.float64))) or np.any(counts < 0):
        raise LongtailError(f"{who}: class_counts must be non-negative numbers, got {counts.tolist()}")
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise LongtailError(f"{who}: class {int(empty[0])} has no training samples; drop the class or add images for it")
    return counts.astype(np.float64)


def normalize_to_sum(w: np.ndarray, total: float | None = None) -> np.ndarray:
    """``w * total / sum(w)`` with ``total`` = number of classes by default (the seeds' "sum C")."""
    w = np.asarray(w, dtype=np.float64)
    total = float(w.size) if total is None else float(total)
    return w * (total / w.sum())


def inverse_frequency_weights(
    class_counts: Sequence[int] | np.ndarray, power: float = 1.0, extra: Sequence[float] | None = None
) -> np.ndarray:
    """``(extra_c / n_c)^power`` normalised to sum C (MBIT ``re_weight``; HMLoss ``CS`` with power 1)."""
    counts = as_counts(class_counts, "inverse_frequency")
    x = 1.0 / counts
    if extra is not None:
        e = np.asarray(extra, dtype=np.float64)
        if e.shape != counts.shape or np.any(e < 0):
            raise ConfigError(f"extra: need {counts.size} non-negative per-class multipliers, got {np.asarray(extra).tolist()}")
        x = x * e
    return normalize_to_sum(np.power(x, power))


def effective_number_weights(class_counts: Sequence[int] | np.ndarray, beta: float = 0.9999) -> np.ndarray:
    """Class-balanced weights ``(1 - beta) / (1 - beta^n_c)`` normalised to sum C (Cui et al. 2019).

    ``beta = 0`` gives uniform weights; ``beta -> 1`` approaches inverse frequency.
    """
    if not 0.0 <= beta < 1.0:
        raise ConfigError(f"beta: must be in [0, 1) for effective-number weights, got {beta}")
    counts = as_counts(class_counts, "effective_number")
    effective = (1.0 - np.power(beta, counts)) / (1.0 - beta)
    return normalize_to_sum(1.0 / effective)


def dynamic_tau(per_class_accuracy: np.ndarray, form: DynamicForm = "imagenet") -> float:
    """CDB's data-driven exponent from the spread of validation accuracy.

    ``imagenet`` (canonical; ImageNet-LT code and CIFAR ``compute_weights``): ``2 * sigmoid(A_max / (A_min + 0.01) - 1)``.
    ``cifar`` (CIFAR-LT / EGTEA loss files): ``sigmoid(A_max / (A_min + 0.01))``.
    """
    acc = np.asarray(per_class_accuracy, dtype=np.float64)
    a_max, a_min = np.nanmax(acc), np.nanmin(acc)
    ratio = a_max / (a_min + 0.01)
    if form == "imagenet":
        return float(2.0 / (1.0 + np.exp(-(ratio - 1.0))))
    if form == "cifar":
        return float(1.0 / (1.0 + np.exp(-ratio)))
    raise ConfigError(f"dynamic_form: must be 'imagenet' or 'cifar', got '{form}'")


def check_tau(tau: float | str) -> None:
    """A CDB ``tau`` is a non-negative number or the string 'dynamic'."""
    if isinstance(tau, str):
        if tau != "dynamic":
            raise ConfigError(f"tau: must be a non-negative number or 'dynamic', got '{tau}'")
    elif not tau >= 0:
        raise ConfigError(f"tau: must be a non-negative number or 'dynamic', got {tau}")


def cdb_weights(
    per_class_accuracy: Sequence[float] | np.ndarray,
    tau: float | str = "dynamic",
    dynamic_form: DynamicForm = "imagenet",
    eps: float = 0.01,
) -> np.ndarray:
    """Class-wise difficulty weights ``max(1 - A_c, eps)^tau`` normalised to sum C (Sinha et al. 2020).

    Deviation from the original: the difficulty is floored at ``eps`` so a class with 100%
    validation accuracy keeps a small weight instead of exactly 0 (and all-perfect validation
    gives uniform weights instead of 0/0). A class absent from validation (NaN accuracy) is
    treated as maximally difficult (``d = 1``), the value every class has before validation.
    """
    check_tau(tau)
    acc = np.asarray(per_class_accuracy, dtype=np.float64)
    if acc.ndim != 1:
        raise LongtailError(f"cdb: per_class_accuracy must be 1-D (one value per class), got shape {acc.shape}")
    if np.any((acc < 0) | (acc > 1)):
        raise LongtailError(f"cdb: per-class accuracy must lie in [0, 1], got {acc.tolist()}")
    difficulty = np.where(np.isnan(acc), 1.0, 1.0 - acc)
    if np.all(np.isnan(acc)):
        return np.ones_like(acc)
    exponent = dynamic_tau(acc, dynamic_form) if tau == "dynamic" else float(tau)
    return normalize_to_sum(np.power(np.maximum(difficulty, eps), exponent))


def spbl_cost_vector(complexity: Sequence[float] | np.ndarray, seed: int = 0, max_value: float = 10.0) -> np.ndarray:
    """SPBL's consistent cost vector (Liu & Zhou 2009 generator, as used by SPBL), ported to NumPy.

    Draw C costs from U[1, max_value], divide by their minimum (so min = 1, max <= max_value), sort
    ascending; the class with the largest complexity H (many, easy samples) gets the smallest cost,
    the class with the smallest H the largest cost, the middle ranks get the remaining costs in a
    random order. Seeded with ``numpy.random.default_rng(seed)`` instead of MATLAB's RNG.
    """
    h = np.asarray(complexity, dtype=np.float64)
    if h.ndim != 1 or h.size < 1 or not np.all(np.isfinite(h)):
        raise LongtailError(f"spbl_cost: complexity must be a finite 1-D array (one value per class), got {h.tolist()}")
    if not max_value >= 1.0:
        raise ConfigError(f"max_value: must be >= 1, got {max_value}")
    rng = np.random.default_rng(seed)
    costs = np.sort(rng.uniform(1.0, max_value, size=h.size))
    costs = costs / costs[0]
    order = np.argsort(-h, kind="stable")  # largest H first
    assigned = costs.copy()
    if h.size > 2:
        assigned[1:-1] = rng.permutation(costs[1:-1])
    out = np.empty_like(costs)
    out[order] = assigned
    return out
