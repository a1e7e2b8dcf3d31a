"""Selective prediction: let the model abstain on its least confident images and hand them to a clinician
(Geifman & El-Yaniv 2017, "Selective Classification for Deep Neural Networks").

A confidence score ranks the images: ``max_prob`` (the softmax response, top-1 probability) or
``margin`` (top-1 minus top-2 probability). Accepting the k most confident of N gives one point of
the risk-coverage curve: coverage k / N and the risk of the accepted images. Ties in the score are
broken by image order (a stable sort), so the curve is deterministic; a threshold cannot split a tie,
so :func:`choose_threshold` only picks points where the score changes.

Two risks per point:

* ``error``: top-1 error of the accepted images (1 - accuracy), the risk of Geifman et al.; its AURC
  is the mean over k = 1..N of that error (Geifman et al. 2019, "Bias-Reduced Uncertainty Estimation
  for Deep Neural Classifiers").
* ``risk``: the balanced error, 1 - balanced accuracy of the accepted images, the long-tail form.
  Balanced accuracy is the mean recall over the classes *present among the accepted images' true
  labels* (scikit-learn's ``balanced_accuracy_score`` on the accepted subset, the package's macro
  convention). A class whose every image was deferred therefore drops out of the mean instead of
  scoring 0: abstaining on a hard class lowers this risk, which is what deferring to a clinician is
  for, but read it beside the per-class coverage.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import numpy as np

from ..core.errors import ConfigError, LongtailError
from ..metrics.calibration_scores import check_prob_rows, check_probs
from ..metrics.inputs import to_numpy

log = logging.getLogger("longtail")

SCORES = ("max_prob", "margin")
RISKS = ("error", "balanced")
#: a risk target met by fewer accepted validation images than this gets a warning: the threshold rests on too few images
MIN_ACCEPTED = 30


# ---------------------------------------------------------------------------------- scores
def confidence(probs: np.ndarray, score: Literal["max_prob", "margin"] = "max_prob") -> np.ndarray:
    """Per-image confidence: top-1 probability, or top-1 minus top-2 (margin) which also sees a close runner-up."""
    if score not in SCORES:
        raise ConfigError(f"eval.selective.score must be 'max_prob' or 'margin', got {score!r}")
    p = np.asarray(probs, dtype=np.float64)
    if score == "max_prob":
        return p.max(axis=1)
    top2 = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def accept(probs: np.ndarray, threshold: float, score: Literal["max_prob", "margin"] = "max_prob") -> np.ndarray:
    """Boolean (N,): the model answers where confidence >= threshold and abstains elsewhere."""
    p = to_numpy(probs).astype(np.float64, copy=False)
    if p.ndim != 2 or p.shape[1] < 2:
        raise LongtailError(f"probabilities must be an N x C array with C >= 2 classes, got shape {p.shape}")
    check_prob_rows(p)
    return confidence(p, score) >= _check_threshold(threshold)


# ---------------------------------------------------------------------------------- the curve
def risk_coverage(probs: np.ndarray, y: np.ndarray, score: Literal["max_prob", "margin"] = "max_prob") -> dict[str, np.ndarray]:
    """The risk-coverage curve, one point per k = 1..N accepted images (most confident first, ties by image order).

    Keys: ``coverage`` (k / N), ``confidence`` (of the k-th image: accepting ``>=`` it takes at least k),
    ``risk`` (balanced error), ``error`` (top-1 error), ``accuracy``, ``balanced_accuracy`` of the accepted images.
    """
    p, yy = check_probs(probs, y)
    conf = confidence(p, score)
    order = np.argsort(-conf, kind="stable")
    y_sorted = yy[order]
    correct = (p.argmax(axis=1) == yy)[order].astype(np.float64)
    k = np.arange(1, len(yy) + 1, dtype=np.float64)
    accuracy = np.cumsum(correct) / k
    bal = _running_balanced_accuracy(y_sorted, correct)
    return {"coverage": k / len(yy), "confidence": conf[order], "risk": 1.0 - bal, "error": 1.0 - accuracy,
            "accuracy": accuracy, "balanced_accuracy": bal}


def _running_balanced_accuracy(y_sorted: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Balanced accuracy of the first k items for every k in O(N log N): each item changes only its own class's recall.

    Item i of class c, the m-th of its class, moves recall_c from (h - x_i) / (m - 1) to h / m
    (h = hits of c among the first i; the old recall counts 0 when m = 1, a newly present class).
    The running sum of those changes over the running number of present classes is the mean recall.
    """
    n = len(y_sorted)
    by_class = np.lexsort((np.arange(n), y_sorted))  # positions grouped by class, in ranking order within a class
    cls = y_sorted[by_class]
    start = np.r_[True, cls[1:] != cls[:-1]]
    group_start = np.maximum.accumulate(np.where(start, np.arange(n), 0))
    hits_all = np.cumsum(correct[by_class])
    hits = hits_all - np.where(group_start > 0, hits_all[group_start - 1], 0.0)
    m = np.arange(n) - group_start + 1.0
    old = np.where(m > 1, (hits - correct[by_class]) / np.maximum(m - 1, 1), 0.0)
    delta = np.empty(n)
    delta[by_class] = hits / m - old
    new_class = np.empty(n)
    new_class[by_class] = (m == 1).astype(np.float64)
    return np.cumsum(delta) / np.cumsum(new_class)


def aurc(curve: dict[str, np.ndarray], risk: Literal["error", "balanced"] = "error") -> float:
    """Area under the risk-coverage curve, the mean risk over k = 1..N (Geifman et al. 2019); lower is better."""
    if risk not in RISKS:
        raise LongtailError(f"aurc risk must be 'error' (top-1 error) or 'balanced' (balanced error), got {risk!r}")
    return float(np.mean(curve["error"] if risk == "error" else curve["risk"]))


# ---------------------------------------------------------------------------------- thresholds
def choose_threshold(probs_val: np.ndarray, y_val: np.ndarray, score: Literal["max_prob", "margin"] = "max_prob",
                     target_coverage: float | None = None, target_risk: float | None = None) -> float:
    """The confidence threshold, chosen on validation, for exactly one target.

    ``target_coverage``: the confidence of the ceil(target * N)-th most confident image (ties at it are all
    accepted, so validation coverage is at least the target). ``target_risk``: the lowest threshold whose
    accepted images have balanced error <= target, i.e. the largest coverage that meets it.
    """
    if (target_coverage is None) == (target_risk is None):
        raise ConfigError("set exactly one of eval.selective.target_coverage or eval.selective.target_risk")
    curve = risk_coverage(probs_val, y_val, score)
    if target_coverage is not None:
        return _threshold_for_coverage(curve, _check_unit("eval.selective.target_coverage", target_coverage, low_open=True))
    return _threshold_for_risk(curve, _check_unit("eval.selective.target_risk", target_risk, low_open=False))


def _threshold_for_coverage(curve: dict[str, np.ndarray], target: float) -> float:
    n = len(curve["coverage"])
    k = min(n, max(1, math.ceil(target * n - 1e-9)))
    return float(curve["confidence"][k - 1])


def _threshold_for_risk(curve: dict[str, np.ndarray], target: float) -> float:
    conf, risk = curve["confidence"], curve["risk"]
    n = len(conf)
    reachable = np.r_[conf[:-1] > conf[1:], True]  # k = i + 1 accepted is a threshold's outcome only where the score drops
    ok = np.flatnonzero(reachable & (risk <= target + 1e-12))
    if not len(ok):
        best = int(np.flatnonzero(reachable)[np.argmin(risk[reachable])])
        raise ConfigError(f"eval.selective.target_risk {target:g} cannot be met on validation: the lowest balanced error at any threshold is "
                          f"{risk[best]:.4g} (coverage {(best + 1) / n:.3g}); raise eval.selective.target_risk to at least that or set eval.selective.target_coverage instead")
    i = int(ok[-1])
    if i + 1 < MIN_ACCEPTED:
        log.warning(f"eval.selective.target_risk {target:g} is met on validation only by accepting {i + 1} images (coverage {(i + 1) / n:.3g}); the threshold rests on too few images")
    return float(conf[i])


# ---------------------------------------------------------------------------------- test summary
def selective_summary(probs_test: np.ndarray, y_test: np.ndarray, threshold: float, score: Literal["max_prob", "margin"] = "max_prob") -> dict[str, Any]:
    """What the validation threshold gives on test: coverage, accuracy and balanced accuracy of the accepted images, abstentions.

    ``per_class_coverage`` (share of each true class answered, None for a class absent from test) shows
    which classes the abstentions fall on, which the balanced accuracy of the accepted images hides.
    """
    p, yy = check_probs(probs_test, y_test)
    keep = confidence(p, score) >= _check_threshold(threshold)
    n_acc = int(keep.sum())
    pred = p.argmax(axis=1)
    counts = np.bincount(yy, minlength=p.shape[1])
    answered = np.bincount(yy[keep], minlength=p.shape[1])
    return {
        "threshold": float(threshold), "coverage": n_acc / len(yy), "accepted": n_acc, "abstained": len(yy) - n_acc,
        "accuracy": float(np.mean(pred[keep] == yy[keep])) if n_acc else None,
        "balanced_accuracy": _balanced_accuracy(yy[keep], pred[keep]) if n_acc else None,
        "per_class_coverage": [float(a / n) if n else None for a, n in zip(answered, counts)],
    }


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean recall over the classes present in y (the package's macro convention)."""
    classes = np.unique(y)
    return float(np.mean([np.mean(pred[y == c] == c) for c in classes]))


# ---------------------------------------------------------------------------------- checks
def _check_threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)) or not math.isfinite(float(threshold)):
        raise LongtailError(f"a selective threshold must be a finite number, got {threshold!r}; choose it on validation with choose_threshold")
    return float(threshold)


def _check_unit(key: str, value: Any, low_open: bool) -> float:
    """A coverage in (0, 1] or a risk in [0, 1]."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and math.isfinite(float(value))
    if ok:
        v = float(value)
        ok = (0.0 < v if low_open else 0.0 <= v) and v <= 1.0
    if not ok:
        raise ConfigError(f"{key} must be in {'(0, 1]' if low_open else '[0, 1]'}, got {value!r}")
    return float(value)
