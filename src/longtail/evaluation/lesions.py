"""Lesion-level evaluation: one prediction per lesion instead of one per image.

HAM10000 holds several photographs of many lesions (its ``lesion_id``), and a clinician decides per
lesion. Scoring images weighs a lesion by how often it was photographed; scoring lesions weighs each
once. :func:`aggregate_by_group` turns a split's per-image probabilities into per-lesion ones, which
every metric then takes as it takes images.

The images' *probabilities* are averaged, not their logits: the mean of (calibrated) probabilities
is the lesion's expected probability under a random choice of its photographs, stays a probability
vector, and keeps a post-hoc calibration valid; the mean of logits is a geometric mean of
probabilities, which a single over-confident photograph dominates.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.errors import DataError
from ..metrics import to_numpy

log = logging.getLogger("longtail")

#: the id an image without a lesion id gets (it is its own lesion): this prefix and its row index
MISSING_ID_PREFIX = "no-lesion-id:"


def _check_probs(probs: Any) -> np.ndarray:
    p = to_numpy(probs)
    if p.ndim != 2 or len(p) == 0 or not np.issubdtype(p.dtype, np.floating):
        raise DataError(f"aggregate_by_group takes an N x C array of probabilities, got shape {p.shape} ({p.dtype}); pass softmax(logits)")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise DataError("aggregate_by_group takes probabilities in [0, 1] (softmax of the logits), not logits; apply softmax first")
    return p


def _check_targets(targets: Any, n: int, num_classes: int) -> np.ndarray:
    y = to_numpy(targets).ravel()
    if len(y) != n:
        raise DataError(f"{len(y)} targets for {n} probability rows; pass one target per image")
    if not np.issubdtype(y.dtype, np.integer) and not np.all(np.mod(y, 1) == 0):
        raise DataError("targets must be class indices (-1 = unlabelled), got non-integer values")
    y = y.astype(np.int64)
    bad = (y < -1) | (y >= num_classes)
    if bad.any():
        raise DataError(f"target {int(y[bad][0])} is outside -1..{num_classes - 1}; fix the labels")
    return y


def _group_keys(group_ids: Sequence[Any], n: int) -> list[str]:
    """One string id per image; an image without one (None, NaN, "") is its own lesion (with a warning)."""
    from .subgroups import is_missing

    ids = list(np.asarray(group_ids, dtype=object).ravel())
    if len(ids) != n:
        raise DataError(f"{len(ids)} lesion ids for {n} images; give every image its lesion id (or none, to score images)")
    absent = [is_missing(g) for g in ids]
    keys = [f"{MISSING_ID_PREFIX}{i}" if a else str(g) for i, (g, a) in enumerate(zip(ids, absent))]
    missing = sum(absent)
    if missing:
        log.warning(f"{missing} of {n} images have no lesion id; each counts as a lesion of its own (fill the lesion_id column to group them)")
    return keys


def first_appearance(keys: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """(group index of every row, group ids), groups numbered in the order they first appear."""
    uniq, first, inverse = np.unique(np.asarray(keys, dtype=object).astype(str), return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse.ravel()], [str(uniq[i]) for i in order]


def _label_name(c: int, class_names: Sequence[str] | None) -> str:
    return str(class_names[c]) if class_names is not None and 0 <= c < len(class_names) else str(c)


def _conflict_error(gid: str, labels: np.ndarray, class_names: Sequence[str] | None) -> DataError:
    names = [f"'{_label_name(int(c), class_names)}'" for c in np.unique(labels)]
    listed = ", ".join(names[:-1]) + f" and {names[-1]}"
    return DataError(f"lesion '{gid}' has images labelled {listed}; fix the labels")


def group_targets(y: np.ndarray, index: np.ndarray, ids: list[str], class_names: Sequence[str] | None = None) -> np.ndarray:
    """Each group's label: the one its labelled images share (-1 when all are unlabelled); an error when they disagree."""
    g = len(ids)
    labelled = y >= 0
    low = np.full(g, np.iinfo(np.int64).max)
    high = np.full(g, -1)
    np.minimum.at(low, index[labelled], y[labelled])
    np.maximum.at(high, index[labelled], y[labelled])
    conflict = np.flatnonzero((high >= 0) & (low != high))
    if conflict.size:
        k = int(conflict[0])
        raise _conflict_error(ids[k], y[labelled & (index == k)], class_names)
    return high  # -1 where no image of the group is labelled


def aggregate_by_group(
    probs: Any, targets: Any, group_ids: Sequence[Any], class_names: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per-lesion (probabilities, targets, ids) from per-image ones, lesions in first-appearance order.

    A lesion's probabilities are the mean of its images' (see the module docstring for why not
    logits); its target is the label its labelled images share, -1 only when none is labelled.
    Images of one lesion with different labels are a one-line error naming the lesion
    (``class_names`` make the message name the classes). A split in which every lesion has one
    image comes back unchanged. The probabilities keep their dtype.
    """
    p = _check_probs(probs)
    y = _check_targets(targets, len(p), p.shape[1])
    index, ids = first_appearance(_group_keys(group_ids, len(p)))
    sums = np.zeros((len(ids), p.shape[1]), dtype=np.float64)
    np.add.at(sums, index, p.astype(np.float64))
    counts = np.bincount(index, minlength=len(ids)).astype(np.float64)
    mean = (sums / counts[:, None]).astype(p.dtype, copy=False)
    return mean, group_targets(y, index, ids, class_names), ids
