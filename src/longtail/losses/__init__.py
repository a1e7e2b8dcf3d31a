"""Long-tail losses and per-class weight schedules (see docs/methods.md for one card per method).

Every loss is a :class:`LongTailLoss` registered in ``longtail.core.registry.LOSSES``; every schedule a
:class:`WeightSchedule` registered in ``longtail.core.registry.WEIGHTS``. Standalone use::

    from longtail.losses import create
    loss = create("ldam", class_counts=[500, 50, 5], max_margin=0.5)
    value = loss(logits, targets)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.errors import ConfigError
from ..core.registry import LOSSES, WEIGHTS
from . import bcl, cce, cdb, ce, class_balanced, eql, focal, gcl, ghm, hml, ib, lade, las, ldam, low, mwnl, ride, sade, weights  # noqa: F401  (registration)
from .base import LongTailLoss
from .weighting import cdb_weights, dynamic_tau, effective_number_weights, inverse_frequency_weights, spbl_cost_vector
from .weights import WeightSchedule

__all__ = [
    "LongTailLoss",
    "WeightSchedule",
    "build_loss",
    "build_weights",
    "create",
    "create_weights",
    "cdb_weights",
    "dynamic_tau",
    "effective_number_weights",
    "inverse_frequency_weights",
    "spbl_cost_vector",
]


def _counts(class_counts: Any, kwargs: dict[str, Any]) -> Any:
    """Accept the counts positionally or as ``class_counts=`` (but not both)."""
    if "class_counts" in kwargs:
        if class_counts is not None:
            raise ConfigError("class_counts given twice; pass it once")
        return kwargs.pop("class_counts")
    if class_counts is None:
        raise ConfigError("class_counts is required: pass the number of training samples per class")
    return class_counts


def create(name: str, class_counts: Sequence[int] | np.ndarray | None = None, /, **kwargs: Any) -> LongTailLoss:
    """Build the loss ``name`` (checked kwargs, one-line errors) for the given training counts."""
    counts = _counts(class_counts, kwargs)
    return LOSSES.create(name, counts, **kwargs)


def create_weights(name: str, class_counts: Sequence[int] | np.ndarray | None = None, /, **kwargs: Any) -> WeightSchedule:
    """Build the class-weight schedule ``name`` for the given training counts."""
    counts = _counts(class_counts, kwargs)
    return WEIGHTS.create(name, counts, **kwargs)


def _from_config(spec: Any, where: str) -> tuple[str, dict[str, Any]]:
    kwargs = spec.kwargs
    if "class_counts" in kwargs:
        raise ConfigError(f"{where}.class_counts: class counts come from the training data; remove the key")
    return spec.name, kwargs


def build_loss(spec: Any, class_counts: Sequence[int] | np.ndarray) -> LongTailLoss:
    """Loss from a config entry (``spec.name`` + ``spec.kwargs``, a ``longtail.core.schema.Component``)."""
    name, kwargs = _from_config(spec, "loss")
    return LOSSES.create(name, class_counts, **kwargs)


def build_weights(spec: Any, class_counts: Sequence[int] | np.ndarray) -> WeightSchedule:
    """Class-weight schedule from a config entry (``spec.name`` + ``spec.kwargs``)."""
    name, kwargs = _from_config(spec, "class_weights")
    return WEIGHTS.create(name, class_counts, **kwargs)
