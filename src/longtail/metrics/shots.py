"""Many / medium / few-shot groups of classes by their train counts, and the thresholds that define them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..core.errors import LongtailError

SHOT_GROUPS = ("many", "medium", "few")


# ------------------------------------------------------------------------------ groupings
def shot_groups(train_counts: Sequence[int] | np.ndarray, thresholds: tuple[int, int] = (100, 20)) -> dict[str, list[int]]:
    """Class indices per shot group: many (> hi), medium (lo..hi inclusive), few (< lo).

    The classifier-balancing protocol (ImageNet-LT: hi=100, lo=20). Groups may be empty.
    """
    hi, lo = int(thresholds[0]), int(thresholds[1])
    if lo > hi:
        raise LongtailError(f"shot thresholds must be (many, few) with many >= few, got {tuple(thresholds)}; e.g. (100, 20)")
    counts = np.asarray(train_counts)
    return {
        "many": [int(c) for c in np.flatnonzero(counts > hi)],
        "medium": [int(c) for c in np.flatnonzero((counts >= lo) & (counts <= hi))],
        "few": [int(c) for c in np.flatnonzero(counts < lo)],
    }


DEFAULT_SHOT_THRESHOLDS = (100, 20)


def resolve_shot_thresholds(train_counts: Sequence[int] | np.ndarray, thresholds: tuple[int, int] | str | None) -> tuple[tuple[int, int], str]:
    """The (many >, few <) thresholds to use, and the rule that chose them (the report states it).

    A pair is used as given. ``"auto"`` takes the terciles of the train counts: with C classes
    sorted by count, the smallest C//3 form 'few' and the largest C//3 'many' (ties may move a
    class to 'medium'). ``None`` is (100, 20), unless that leaves a group empty, then the terciles.
    """
    if thresholds is not None and not isinstance(thresholds, str):
        hi, lo = int(thresholds[0]), int(thresholds[1])
        return (hi, lo), f"fixed: many > {hi}, few < {lo} train images"
    if thresholds not in (None, "auto"):
        raise LongtailError(f"shot thresholds must be a (many, few) pair or 'auto', got {thresholds!r}")
    counts = np.sort(np.asarray(train_counts, dtype=np.int64))
    k = len(counts) // 3
    terciles = (int(counts[len(counts) - k - 1]), int(counts[k])) if len(counts) else DEFAULT_SHOT_THRESHOLDS
    if thresholds == "auto":
        return terciles, f"terciles of the train counts (eval.shot_thresholds: auto): many > {terciles[0]}, few < {terciles[1]}"
    empty = [g for g, c in shot_groups(counts, DEFAULT_SHOT_THRESHOLDS).items() if not c]
    if not empty:
        return DEFAULT_SHOT_THRESHOLDS, f"fixed: many > {DEFAULT_SHOT_THRESHOLDS[0]}, few < {DEFAULT_SHOT_THRESHOLDS[1]} train images"
    return terciles, (f"terciles of the train counts (many > {terciles[0]}, few < {terciles[1]}), because the default "
                      f"(100, 20) leaves the {' and '.join(repr(g) for g in empty)} group{'s' if len(empty) > 1 else ''} empty")
