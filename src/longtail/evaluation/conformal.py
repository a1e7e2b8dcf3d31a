"""Split conformal prediction sets (Vovk et al. 2005; Angelopoulos & Bates 2021, "A Gentle Introduction to
Conformal Prediction"), LAC score (Sadinle, Lei & Wasserman 2019): a set of classes per image that holds
the true class with probability at least 1 - alpha.

Calibration (the validation split, never test): the nonconformity score of an image is
``s = 1 - p_y``. With n scores and ``k = ceil((n + 1)(1 - alpha))``, the threshold ``q`` is the k-th
smallest score, i.e. the ``k / n`` empirical quantile taken as an order statistic (the inverse of the
empirical CDF); a test set is ``{c : 1 - p_c <= q}``. If calibration and test images are
exchangeable, ``P(y in set) >= 1 - alpha`` (and ``<= 1 - alpha + 1 / (n + 1)`` without ties).
This is MAPIE 1.6's ``SplitConformalClassifier(conformity_score="lac")`` convention exactly
(``np.quantile(s, k / n, method="lower")``). Note that ``np.quantile(s, k / n, method="higher")``, as
printed in some tutorials, is the (k + 1)-th smallest whenever k < n: one order statistic more
conservative than needed.

* ``marginal``: one q from all calibration images: coverage holds on average over images, and can be
  far below 1 - alpha for a rare class (the long tail is where it fails).
* ``class_conditional`` (Mondrian conformal, Vovk et al. 2005): one q_c per *true* class from that
  class's calibration scores only, and ``{c : 1 - p_c <= q_c}``, so each class is covered at 1 - alpha.

k <= n needs ``n >= (1 - alpha) / alpha`` calibration images (19 for alpha = 0.05). With fewer (or
none, a class absent from validation), no finite order statistic gives the guarantee, so q = 1: the
class is in every set (its label is always covered) and a one-line warning names it.

A class is admitted when ``1 - p_c <= q + 1e-8``: the tolerance is MAPIE's; it absorbs float64 rounding in
``1 - p`` (a test image scored exactly like a calibration image is never left out by it) and only ever adds classes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..core.errors import ConfigError, DataError, LongtailError
from ..metrics.calibration_scores import check_prob_rows, check_probs
from ..metrics.inputs import to_numpy

log = logging.getLogger("longtail")

MODES = ("marginal", "class_conditional")
SET_TOLERANCE = 1e-8
#: guards ceil((n + 1)(1 - alpha)) against float rounding: alpha = 1/3, n = 500 gives 501 * (1 - 1/3) = 334.00000000000006, exactly 334
_RANK_SLACK = 1e-9


# ---------------------------------------------------------------------------------- the fit
@dataclass(frozen=True)
class ConformalFit:
    """What a run stores to build sets later: the thresholds, and the counts that say which classes have the guarantee."""

    mode: str
    alpha: float
    thresholds: float | tuple[float, ...]  # marginal: one q; class_conditional: q_c per class
    counts: tuple[int, ...]  # calibration images per true class
    class_names: tuple[str, ...]
    method: str = "lac"

    @property
    def num_classes(self) -> int:
        return len(self.counts)

    def per_class_thresholds(self) -> np.ndarray:
        """q for each class column (the marginal q repeated), the form :func:`prediction_sets` compares against."""
        if self.mode == "marginal":
            return np.full(self.num_classes, float(self.thresholds))
        return np.asarray(self.thresholds, dtype=np.float64)

    def guaranteed(self) -> tuple[bool, ...]:
        """Per class: was there enough calibration data for the 1 - alpha guarantee (marginal: the split as a whole)."""
        need = min_calibration_count(self.alpha)
        if self.mode == "marginal":
            return (sum(self.counts) >= need,) * self.num_classes
        return tuple(n >= need for n in self.counts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (floats, ints, strings, lists)."""
        return {
            "method": self.method, "mode": self.mode, "alpha": self.alpha,
            "thresholds": float(self.thresholds) if self.mode == "marginal" else [float(q) for q in self.thresholds],
            "counts": list(self.counts), "class_names": list(self.class_names),
            "min_count": min_calibration_count(self.alpha), "guaranteed": list(self.guaranteed()),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ConformalFit:
        """The fit :meth:`to_dict` wrote, checked, so a hand-edited or truncated record fails with a message instead of odd sets."""
        missing = [k for k in ("mode", "alpha", "thresholds", "counts", "class_names") if k not in d]
        if missing:
            raise DataError(f"the stored conformal fit lacks {', '.join(missing)}; refit it on validation (re-run eval with eval.conformal set)")
        mode = _check_mode(d["mode"])
        alpha = check_alpha(d["alpha"])
        counts = tuple(int(c) for c in d["counts"])
        names = tuple(str(n) for n in d["class_names"])
        thresholds: float | tuple[float, ...]
        if mode == "marginal":
            thresholds = float(d["thresholds"])
        else:
            thresholds = tuple(float(q) for q in d["thresholds"])
            if len(thresholds) != len(counts):
                raise DataError(f"the stored conformal fit has {len(thresholds)} thresholds for {len(counts)} classes; refit it on validation")
        if len(names) != len(counts):
            raise DataError(f"the stored conformal fit has {len(counts)} class counts and {len(names)} class names; refit it on validation")
        return cls(mode=mode, alpha=alpha, thresholds=thresholds, counts=counts, class_names=names, method=str(d.get("method", "lac")))


def min_calibration_count(alpha: float) -> int:
    """The fewest calibration images that give a finite threshold: k(n) <= n iff n >= (1 - alpha) / alpha (19 for alpha = 0.05)."""
    alpha = check_alpha(alpha)
    n = max(1, math.floor((1.0 - alpha) / alpha))
    while n > 1 and _rank(n - 1, alpha) <= n - 1:
        n -= 1
    while _rank(n, alpha) > n:
        n += 1
    return n


def conformal_quantile(scores: np.ndarray, alpha: float) -> float:
    """The k-th smallest score, k = ceil((n + 1)(1 - alpha)); 1.0 (every class admitted) when k > n, e.g. no scores at all."""
    alpha = check_alpha(alpha)
    s = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    k = _rank(len(s), alpha)
    return 1.0 if k > len(s) else float(s[k - 1])


def _rank(n: int, alpha: float) -> int:
    """k = ceil((n + 1)(1 - alpha)), the order statistic that gives P(score <= q) >= 1 - alpha (at least 1)."""
    return max(1, math.ceil((n + 1) * (1.0 - alpha) - _RANK_SLACK))


def fit_conformal(probs_cal: np.ndarray, y_cal: np.ndarray, alpha: float, mode: Literal["marginal", "class_conditional"] = "marginal",
                  class_names: Sequence[str] | None = None) -> ConformalFit:
    """Thresholds from calibration (validation) probabilities: one q (marginal) or one per true class (class_conditional)."""
    alpha = check_alpha(alpha)
    mode = _check_mode(mode)
    p, y = check_probs(probs_cal, y_cal)
    names = _class_names(class_names, p.shape[1])
    scores = 1.0 - p[np.arange(len(y)), y]
    counts = np.bincount(y, minlength=p.shape[1])
    need = min_calibration_count(alpha)
    if mode == "marginal":
        if len(y) < need:
            log.warning(f"the calibration split has {len(y)} images; a 1 - {alpha:g} coverage guarantee needs at least {need}; every set holds every class (q = 1)")
        thresholds: float | tuple[float, ...] = conformal_quantile(scores, alpha)
    else:
        for c in np.flatnonzero(counts < need):
            log.warning(f"class '{names[c]}' has {int(counts[c])} validation images; a 1 - {alpha:g} coverage guarantee needs at least {need}; its sets include it always (q = 1)")
        thresholds = tuple(conformal_quantile(scores[y == c], alpha) for c in range(p.shape[1]))
    return ConformalFit(mode=mode, alpha=alpha, thresholds=thresholds, counts=tuple(int(n) for n in counts), class_names=tuple(names))


# ---------------------------------------------------------------------------------- sets
def prediction_sets(probs: np.ndarray, fit: ConformalFit) -> np.ndarray:
    """Boolean (N, C): class c is in image i's set when 1 - p_ic <= q_c (q_c = q in marginal mode)."""
    p = to_numpy(probs).astype(np.float64, copy=False)
    if p.ndim != 2 or p.shape[1] != fit.num_classes:
        raise DataError(f"probabilities of shape {p.shape} do not match the conformal fit's {fit.num_classes} classes; refit it on this run's validation split")
    check_prob_rows(p)
    return (1.0 - p) <= fit.per_class_thresholds()[None, :] + SET_TOLERANCE


def coverage_report(sets: np.ndarray, y: np.ndarray, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Coverage and set size, overall and per true class (None where a class has no image), the table a clinician reads."""
    s = np.asarray(sets, dtype=bool)
    yy = to_numpy(y).astype(np.int64)
    if s.ndim != 2 or yy.shape != (len(s),) or len(s) == 0:
        raise LongtailError(f"sets must be a non-empty N x C boolean array with one label per row, got {s.shape} and {yy.shape}")
    if yy.min() < 0 or yy.max() >= s.shape[1]:
        raise LongtailError(f"labels must be class indices in 0..{s.shape[1] - 1}; drop unlabelled images before the coverage report")
    names = _class_names(class_names, s.shape[1])
    covered = s[np.arange(len(yy)), yy]
    size = s.sum(axis=1)
    per_class = []
    for c, name in enumerate(names):
        mask = yy == c
        n = int(mask.sum())
        per_class.append({"class": name, "count": n,
                          "coverage": float(covered[mask].mean()) if n else None,
                          "mean_set_size": float(size[mask].mean()) if n else None})
    return {
        "n": len(yy), "coverage": float(covered.mean()), "mean_set_size": float(size.mean()),
        "empty_share": float((size == 0).mean()), "singleton_share": float((size == 1).mean()),
        "per_class": per_class,
    }


# ---------------------------------------------------------------------------------- checks
def check_alpha(alpha: Any) -> float:
    """alpha in the open interval (0, 1): 0 would need infinite sets, 1 empty ones."""
    ok = isinstance(alpha, (int, float, np.integer, np.floating)) and not isinstance(alpha, bool) and 0.0 < float(alpha) < 1.0
    if not ok:
        raise ConfigError(f"eval.conformal.alpha must be in (0, 1), got {alpha!r}; set e.g. eval.conformal.alpha: 0.1 for 90% coverage")
    return float(alpha)


def _check_mode(mode: Any) -> str:
    if mode not in MODES:
        raise ConfigError(f"eval.conformal.mode must be 'marginal' or 'class_conditional', got {mode!r}")
    return str(mode)


def _class_names(class_names: Sequence[str] | None, num_classes: int) -> list[str]:
    if class_names is None:
        return [str(c) for c in range(num_classes)]
    if len(class_names) != num_classes:
        raise LongtailError(f"got {len(class_names)} class names for {num_classes} probability columns; pass the run's class names in column order")
    return [str(n) for n in class_names]
