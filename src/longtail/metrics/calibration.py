"""Confidence against accuracy: the reliability diagram's bins and the expected calibration error."""

from __future__ import annotations

from typing import Any

import numpy as np

ECE_BINS = 15


# ------------------------------------------------------------------------------ calibration
def reliability(probs: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS) -> dict[str, Any]:
    """Equal-width confidence bins on the max probability: counts, accuracy, confidence, ECE.

    Bin b holds confidences in ``(b/bins, (b+1)/bins]`` (the first bin also holds 0).
    ECE = sum_b |B_b|/N * |acc(B_b) - conf(B_b)| (Guo et al. 2017). Empty bins have None.
    """
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == targets).astype(np.float64)
    idx = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=bins)
    ece = float(np.sum(np.abs(acc_sum - conf_sum)) / len(targets))
    return {
        "edges": [b / bins for b in range(bins + 1)],
        "count": [int(c) for c in count],
        "accuracy": [float(a / c) if c else None for a, c in zip(acc_sum, count)],
        "confidence": [float(s / c) if c else None for s, c in zip(conf_sum, count)],
        "ece": ece,
    }
