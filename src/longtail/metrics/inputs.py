"""Checking and converting what every metric takes: logits, targets, train counts, probabilities."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import LongtailError


# ---------------------------------------------------------------------------------- inputs
def to_numpy(x: Any) -> np.ndarray:
    """A numpy view of a numpy array, torch tensor (any device) or sequence."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if x.is_floating_point() and x.element_size() < 4:  # half / bfloat16: numpy has no bfloat16
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row softmax in float64, stable for large logits."""
    e = logits - logits.max(axis=1, keepdims=True)
    np.exp(e, out=e)
    e /= e.sum(axis=1, keepdims=True)
    return e


def check_inputs(logits: Any, targets: Any, what: str = "logits") -> tuple[np.ndarray, np.ndarray]:
    """(N x C float64 ``what`` (logits, or probabilities), N int64 targets), or a one-line LongtailError saying what is wrong."""
    z = to_numpy(logits).astype(np.float64, copy=False)
    y = to_numpy(targets)
    if z.ndim != 2 or z.shape[1] < 2:
        raise LongtailError(f"{what} must be an N x C array with C >= 2 classes, got shape {z.shape}")
    if y.ndim != 1 or len(y) != len(z):
        raise LongtailError(f"targets must be a vector of {len(z)} labels (one per {'logit' if what == 'logits' else 'probability'} row), got shape {y.shape}")
    if len(y) == 0:
        raise LongtailError("no samples to evaluate: the split is empty; check the data split sizes")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise LongtailError("targets must be integer class indices, got non-integer values")
        y = y.astype(np.int64)
    bad = (y < 0) | (y >= z.shape[1])
    if bad.any():
        raise LongtailError(
            f"target {int(y[bad][0])} is outside 0..{z.shape[1] - 1} ({int(bad.sum())} such labels; "
            "unlabelled samples (-1) cannot be scored: drop them before evaluating)"
        )
    if not np.isfinite(z).all():
        raise LongtailError("logits contain NaN or inf; the model diverged, lower the learning rate or check the data")
    return z, y.astype(np.int64, copy=False)


def check_counts(train_counts: Any, num_classes: int) -> np.ndarray:
    counts = to_numpy(train_counts).astype(np.int64)
    if counts.shape != (num_classes,):
        raise LongtailError(f"train_counts must have one count per class ({num_classes}), got shape {counts.shape}")
    if (counts < 0).any():
        raise LongtailError("train_counts must be non-negative")
    return counts
