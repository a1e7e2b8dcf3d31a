"""Shared pieces of the metrics tests."""

from __future__ import annotations

import numpy as np


def noisy_logits(rng: np.random.Generator, y: np.ndarray, num_classes: int, signal: float = 1.0) -> np.ndarray:
    """Gaussian logits with ``signal`` added to the true class: a classifier of tunable skill."""
    z = rng.normal(size=(len(y), num_classes))
    z[np.arange(len(y)), y] += signal
    return z
