"""How well predicted probabilities match outcomes: ECE, adaptive ECE, Brier score and NLL, in one dict.

All four take probabilities (softmax of the logits, after any temperature scaling), not logits:

* ``ece``: equal-width bins over the top-1 confidence, :func:`.calibration.reliability`'s ECE
  (Guo et al. 2017), reused as it is so the report's reliability diagram and this score agree.
* ``adaptive_ece``: the same sum with equal-mass bins (Nixon et al. 2019, "Measuring Calibration
  in Deep Learning"; the top-1 form Mukhoti et al. 2020 call AdaECE): bin edges at the
  ``b / bins`` quantiles of the confidences (numpy's linear interpolation), outer edges 0 and 1,
  a bin ``[e_b, e_(b+1))``, the last one closed. Equal confidences therefore always share a bin
  (ties never straddle an edge), and ACE = sum_b |B_b|/N * |acc(B_b) - conf(B_b)|. This is
  netcal's ``ECE(bins, equal_intervals=False)``; netcal's ``ACE`` is another metric (the
  unweighted mean over bins, Neumann et al. 2018), not this one.
* ``brier``: the multi-class Brier score (Brier 1950), mean over items of
  sum_c (p_c - onehot_c)^2, in [0, 2], *not* divided by C. For two classes it is twice
  scikit-learn's binary ``brier_score_loss`` (which scores only the positive column) and equal to
  its multi-class form (``scale_by_half=False``).
* ``nll``: mean -log p_y, with p_y clipped at 1e-12 so a confident miss costs about 27.6, not inf.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import LongtailError
from .calibration import ECE_BINS, reliability
from .inputs import check_inputs

NLL_CLIP = 1e-12
#: how far a row of probabilities may sum from 1 (float16 / float32 softmax outputs stored to disk)
PROB_SUM_TOLERANCE = 1e-3


# ---------------------------------------------------------------------------------- inputs
def check_probs(probs: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
    """(N x C float64 probabilities, N int64 targets), or a one-line LongtailError: scores of logits would be silently wrong."""
    p, y = check_inputs(probs, targets, what="probabilities")  # the shape and label checks every metric makes
    check_prob_rows(p)
    return p, y


def check_prob_rows(p: np.ndarray) -> None:
    """Finite, in [0, 1], rows summing to 1: the usual mistake is passing logits."""
    if p.size == 0:
        return
    if not np.isfinite(p).all():
        raise LongtailError("probabilities contain NaN or inf; the model diverged: check training (e.g. lower the learning rate)")
    sums = p.sum(axis=1)
    worst = int(np.argmax(np.abs(sums - 1.0)))
    if p.min() < -PROB_SUM_TOLERANCE or p.max() > 1 + PROB_SUM_TOLERANCE or abs(sums[worst] - 1.0) > PROB_SUM_TOLERANCE:
        raise LongtailError(f"probabilities must be rows in [0, 1] that sum to 1 (row {worst} sums to {sums[worst]:.4g}); pass softmax(logits), not logits")


def _check_bins(bins: int) -> int:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise LongtailError(f"calibration bins must be a positive integer, got {bins!r}; use e.g. 15")
    return int(bins)


# ---------------------------------------------------------------------------------- scores
def adaptive_ece(probs: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-1 ECE over equal-mass bins: equal-width bins leave most of a good model's items in the last bin."""
    p, y = check_probs(probs, targets)
    bins = _check_bins(bins)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.quantile(conf, np.linspace(0.0, 1.0, bins + 1))
    edges[0], edges[-1] = 0.0, 1.0
    idx = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, bins - 1)
    acc_sum = np.bincount(idx, weights=correct, minlength=bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=bins)
    return float(np.sum(np.abs(acc_sum - conf_sum)) / len(y))


def brier_score(probs: np.ndarray, targets: np.ndarray) -> float:
    """Multi-class Brier score, mean_i sum_c (p_ic - [y_i = c])^2: a proper score that also sees the non-top classes."""
    p, y = check_probs(probs, targets)
    p_true = p[np.arange(len(y)), y]
    return float(np.mean(np.sum(p * p, axis=1) - 2.0 * p_true + 1.0))


def nll(probs: np.ndarray, targets: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class, p_y clipped at 1e-12 so one confident miss stays finite."""
    p, y = check_probs(probs, targets)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], NLL_CLIP, 1.0))))


def calibration_scores(probs: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS) -> dict[str, float]:
    """``{"ece", "adaptive_ece", "brier", "nll"}`` of one split's probabilities (the report's calibration row)."""
    p, y = check_probs(probs, targets)
    bins = _check_bins(bins)
    return {
        "ece": float(reliability(p, y, bins)["ece"]),
        "adaptive_ece": adaptive_ece(p, y, bins),
        "brier": brier_score(p, y),
        "nll": nll(p, y),
    }
