"""Metrics per subgroup of one split (sex, age band, anatomical site, skin type): the subgroup tables of
the dermatology foundation-model papers, from stored predictions.

A model that is good on average can be poor on one group; the table shows, per group of a metadata
column, how many images it has and its balanced accuracy, accuracy and (with ``eval.positive``) the
sensitivity for the positive set, then the worst and best reported group and the gap between them.

Conventions (fairlearn's ``MetricFrame(...).by_group`` is the reference in the tests):

* **Balanced accuracy inside a group** is the mean recall over the classes *present in that group*
  (scikit-learn's ``balanced_accuracy_score``; the same convention as
  :data:`longtail.metrics.CONVENTIONS`). A group of only nevi scores its nevus recall, not an average
  with undefined recalls of classes it lacks.
* **Sensitivity** is the recall of the union of the ``positive`` classes taken as one class: of the
  group's images whose true class is in the set, the share predicted into the set. None without
  ``positive`` or when the group has no positive image.
* **Small groups** (fewer than ``min_count`` images) are listed with their ``n`` but their metrics are
  n/a (None) and they take no part in ``worst`` / ``best`` / ``gap``: a recall over 5 images says
  little, and a gap driven by it would mislead.
* **Missing values** ("", None, NaN, a blank string) form one explicit ``"unknown"`` group, listed last;
  the other groups are sorted by name, numerically when a name starts with a number (age bands read
  ``<30``, ``30-44``, ..., ``75+``).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np

from ..core.errors import ConfigError, DataError
from ..metrics import to_numpy
from .decision import conditional_rates

log = logging.getLogger("longtail")

#: the config keys the messages name (the wiring of the ``eval`` section uses the same names)
SUBGROUPS_KEY = "eval.subgroups"
MIN_COUNT_KEY = "eval.subgroup_min_count"
UNKNOWN = "unknown"
DEFAULT_AGE_EDGES = (0, 30, 45, 60, 75, 200)
DEFAULT_MIN_COUNT = 30


# ---------------------------------------------------------------------------- group labels
def is_missing(value: Any) -> bool:
    """True for the values a metadata column uses for "not recorded": None, NaN, "" (or blanks), pandas NA."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip() or value.strip().lower() == "nan"
    if isinstance(value, (float, np.floating)):
        return math.isnan(value)
    return type(value).__name__ in ("NAType", "NaTType")  # pandas' missing markers, without importing pandas


def group_labels(groups: Any) -> np.ndarray:
    """The column as strings, every missing value as ``"unknown"`` (so it forms one explicit group)."""
    values = to_numpy(groups) if hasattr(groups, "detach") else np.asarray(groups, dtype=object)
    return np.asarray([UNKNOWN if is_missing(v) else str(v).strip() for v in values.ravel()], dtype=object)


def _band_names(edges: Sequence[int]) -> list[str]:
    """``<30``, ``30-44``, ..., ``75+`` for integer edges (0, 30, 45, 60, 75, 200)."""
    n = len(edges) - 1
    if n == 1:
        return [f"{edges[0]}-{edges[1] - 1}"]
    return [f"<{edges[1]}"] + [f"{edges[i]}-{edges[i + 1] - 1}" for i in range(1, n - 1)] + [f"{edges[n - 1]}+"]


def _check_edges(edges: Sequence[Any]) -> list[int]:
    try:
        out = [int(e) for e in edges]
    except (TypeError, ValueError):
        out = []
    if len(out) < 2 or any(float(a) != b for a, b in zip(edges, out)) or any(b <= a for a, b in pairwise(out)):
        raise ConfigError(f"age band edges {list(edges)} must be at least two increasing whole numbers of years, e.g. [0, 30, 45, 60, 75, 200]")
    return out


def _as_age(value: Any) -> float:
    """A number of years, or NaN for a missing or non-numeric entry ("unknown", "", None, "sixty")."""
    if is_missing(value) or isinstance(value, bool):
        return math.nan
    try:
        age = float(value)
    except (TypeError, ValueError):
        return math.nan
    return age if math.isfinite(age) else math.nan


def age_bands(ages: Any, edges: Sequence[int] = DEFAULT_AGE_EDGES) -> np.ndarray:
    """Ages as band names (``[e_i, e_{i+1})``: ``<30``, ``30-44``, ``45-59``, ``60-74``, ``75+``).

    Age is continuous, so per-age rows would each hold a handful of images; bands make groups large
    enough to report. A missing, non-numeric or out-of-range age (below the first edge or at/after
    the last) is ``"unknown"``.
    """
    bounds = _check_edges(edges)
    names = np.asarray(_band_names(bounds) + [UNKNOWN], dtype=object)
    values = np.asarray(ages, dtype=object).ravel()
    years = np.asarray([_as_age(v) for v in values], dtype=np.float64)
    band = np.searchsorted(np.asarray(bounds, dtype=np.float64), years, side="right") - 1
    inside = np.isfinite(years) & (band >= 0) & (band < len(bounds) - 1)
    return names[np.where(inside, band, len(bounds) - 1)]


# ------------------------------------------------------------------------------ the table
def _check_labels(y_true: Any, y_pred: Any, num_classes: int, column: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    y, p = to_numpy(y_true).ravel(), to_numpy(y_pred).ravel()
    if len(y) != len(p):
        raise DataError(f"subgroup table of '{column}' on {split}: {len(y)} targets but {len(p)} predictions; pass one prediction per image")
    if len(y) == 0:
        raise DataError(f"subgroup table of '{column}' on {split}: the split has no images; check the data split sizes")
    for name, a in (("target", y), ("prediction", p)):
        if not np.issubdtype(a.dtype, np.integer) and not np.all(np.mod(a, 1) == 0):
            raise DataError(f"subgroup table of '{column}' on {split}: {name}s must be class indices, got non-integer values")
        bad = (a < 0) | (a >= num_classes)
        if bad.any():
            raise DataError(f"subgroup table of '{column}' on {split}: {name} {int(a[bad][0])} is outside 0..{num_classes - 1} "
                            "(unlabelled images, -1, cannot be scored: drop them before the table)")
    return y.astype(np.int64), p.astype(np.int64)


def _check_positive(positive: Sequence[int] | None, num_classes: int) -> list[int] | None:
    if positive is None:
        return None
    idx = sorted({int(c) for c in positive})
    if not idx or idx[0] < 0 or idx[-1] >= num_classes:
        raise ConfigError(f"eval.positive: class indices {list(positive)} must be a non-empty subset of 0..{num_classes - 1}")
    return idx


def _check_groups(labels: np.ndarray, n: int, column: str, split: str) -> list[str]:
    """The column's groups in table order; one-line errors for a length mismatch or a single value."""
    if len(labels) != n:
        raise DataError(f"column '{column}' has {len(labels)} values but {split} has {n} images; "
                        f"give one value per image or remove '{column}' from {SUBGROUPS_KEY}")
    present = set(labels.tolist())
    names = sorted(present - {UNKNOWN}, key=order_key) + ([UNKNOWN] if UNKNOWN in present else [])
    if len(names) < 2:
        raise ConfigError(f"column '{column}' has one value ('{names[0]}') on {split}; a subgroup table needs at least two groups: "
                          f"remove it from {SUBGROUPS_KEY}")
    return names


_LEADING_NUMBER = re.compile(r"^(<)?\s*(-?\d+(?:\.\d+)?)")


def order_key(name: str) -> tuple[int, float, str]:
    """Table order: names that start with a number by that number (``<30`` just before ``30-44``, so age
    bands read in age order), then the others alphabetically."""
    m = _LEADING_NUMBER.match(name)
    if m is None:
        return (1, 0.0, name)
    return (0, float(m.group(2)) - (0.5 if m.group(1) else 0.0), name)


def balanced_accuracy(y: np.ndarray, pred: np.ndarray, num_classes: int) -> float:
    """Mean recall over the classes present in ``y`` (scikit-learn's convention; absent classes' rows are NaN)."""
    return float(np.nanmean(np.diag(conditional_rates(pred, y, num_classes))))


def set_sensitivity(y: np.ndarray, pred: np.ndarray, positive: Sequence[int] | None) -> float | None:
    """Recall of the union of ``positive`` as one class; None without a positive set or a positive image."""
    if positive is None:
        return None
    is_pos = np.isin(y, positive)
    return float(np.isin(pred[is_pos], positive).mean()) if is_pos.any() else None


def _row(group: str, y: np.ndarray, pred: np.ndarray, num_classes: int, positive: list[int] | None, min_count: int) -> dict[str, Any]:
    reported = len(y) >= min_count
    row: dict[str, Any] = {"group": group, "n": len(y), "reported": reported,
                           "balanced_accuracy": None, "accuracy": None, "sensitivity": None}
    if reported:
        row["balanced_accuracy"] = balanced_accuracy(y, pred, num_classes)
        row["accuracy"] = float(np.mean(y == pred))
        row["sensitivity"] = set_sensitivity(y, pred, positive)
    return row


def _extremes(rows: list[dict[str, Any]]) -> tuple[str | None, str | None, float | None]:
    """(worst, best, best - worst) by balanced accuracy over reported rows; ties go to the first in table order."""
    scored = [r for r in rows if r["reported"]]
    if not scored:
        return None, None, None
    scores = [r["balanced_accuracy"] for r in scored]
    worst, best = scored[int(np.argmin(scores))], scored[int(np.argmax(scores))]
    return worst["group"], best["group"], float(best["balanced_accuracy"] - worst["balanced_accuracy"])


def subgroup_table(
    y_true: Any,
    y_pred: Any,
    groups: Any,
    column: str,
    num_classes: int,
    positive: Sequence[int] | None = None,
    min_count: int = DEFAULT_MIN_COUNT,
    split: str = "test",
) -> dict[str, Any]:
    """Per group of ``groups`` (one metadata value per image): n, balanced accuracy, accuracy, sensitivity.

    Returns ``{column, split, min_count, positive, groups: [rows], worst, best, gap}``; each row is
    ``{group, n, balanced_accuracy, accuracy, sensitivity, reported}`` (metrics None when
    ``n < min_count``). ``worst`` / ``best`` name the reported groups with the lowest / highest balanced
    accuracy, ``gap`` is their difference (None when no group is reported). ``split`` only names the
    split in messages. See the module docstring for the conventions.
    """
    if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) or min_count < 0:
        raise ConfigError(f"{MIN_COUNT_KEY}={min_count!r} must be a whole number >= 0 (the fewest images a group needs to be reported)")
    if int(num_classes) < 1:
        raise DataError(f"subgroup table of '{column}': num_classes={num_classes} must be at least 1")
    y, pred = _check_labels(y_true, y_pred, int(num_classes), column, split)
    pos = _check_positive(positive, int(num_classes))
    labels = group_labels(groups)
    names = _check_groups(labels, len(y), column, split)
    rows = [_row(g, y[labels == g], pred[labels == g], int(num_classes), pos, int(min_count)) for g in names]
    if not any(r["reported"] for r in rows):
        log.warning(f"no group of '{column}' on {split} has {min_count} images, so every row is n/a; lower {MIN_COUNT_KEY} to report them")
    worst, best, gap = _extremes(rows)
    return {"column": column, "split": split, "min_count": int(min_count), "positive": pos,
            "groups": rows, "worst": worst, "best": best, "gap": gap}
