"""Make a labelled training set long-tailed: per-class counts and the indices to keep.

Three recipes, all deterministic (class ``i`` is the i-th class of the class list):

- ``ldam`` (LDAM-DRW / HMLoss ``IMBALANCECIFAR``, seeds.md 3.4): ``img_max`` = the largest class
  count; ``exp`` keeps ``int(img_max * (1/ratio)^(i/(C-1)))``, ``step`` keeps ``img_max`` for the
  first ``C//2`` classes and ``int(img_max/ratio)`` for the rest. One RNG seeded with ``seed``
  shuffles each class in turn (exactly ``np.random.seed(seed)`` + ``np.random.shuffle`` per class)
  and the first ``n_i`` shuffled indices are kept. The original ``step`` code drops the last class
  when C is odd; here the remaining ``C - C//2`` classes all get the small count.
- ``cdb`` (CDB-loss CIFAR-LT, seeds.md 4.3): per class, the LAST ``val_per_class`` images form a
  balanced validation set; of the ``n_rest`` left, class i keeps its FIRST
  ``int(n_rest * (1/ratio)^(i/(C-1)))`` (no shuffle).
- ``pareto``: counts follow a Pareto (Lomax) profile ``img_max * (1 + x*(ratio^(1/alpha) - 1))^-alpha``
  with ``x = i/(C-1)``; like ``exp`` it hits the ratio exactly at the last class, but with a heavier
  head for large ``alpha``. Selection as in ``ldam``.

A class with fewer images than its target keeps all it has (counts never exceed availability).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.errors import DataError


@dataclass
class LongTailResult:
    train: np.ndarray  # indices into the input kept for training
    val: np.ndarray | None  # indices held out as balanced validation (cdb only)
    counts: np.ndarray  # per-class training counts actually kept


def exp_counts(img_max: int, num_classes: int, ratio: float) -> list[int]:
    if num_classes == 1:
        return [int(img_max)]
    factor = 1.0 / ratio
    return [int(img_max * factor ** (i / (num_classes - 1.0))) for i in range(num_classes)]


def step_counts(img_max: int, num_classes: int, ratio: float) -> list[int]:
    head = num_classes // 2
    return [int(img_max)] * head + [int(img_max * (1.0 / ratio))] * (num_classes - head)


def pareto_counts(img_max: int, num_classes: int, ratio: float, alpha: float) -> list[int]:
    if num_classes == 1:
        return [int(img_max)]
    k = ratio ** (1.0 / alpha) - 1.0
    return [int(round(img_max * (1.0 + k * i / (num_classes - 1.0)) ** (-alpha))) for i in range(num_classes)]


def target_counts(recipe: str, profile: str, img_max: int, num_classes: int, ratio: float, alpha: float = 6.0) -> list[int]:
    """Per-class training counts a recipe asks for (before capping at availability)."""
    if recipe == "pareto":
        return pareto_counts(img_max, num_classes, ratio, alpha)
    if profile == "step":
        return step_counts(img_max, num_classes, ratio)
    return exp_counts(img_max, num_classes, ratio)


def _per_class(targets: np.ndarray, num_classes: int) -> list[np.ndarray]:
    return [np.flatnonzero(targets == c) for c in range(num_classes)]


def ldam_select(targets: np.ndarray, counts: list[int], seed: int) -> np.ndarray:
    """Shuffle each class with one RNG seeded once, keep the first ``counts[c]`` (LDAM-DRW)."""
    rng = np.random.RandomState(seed)
    keep = []
    for c, idx in enumerate(_per_class(targets, len(counts))):
        idx = idx.copy()
        rng.shuffle(idx)
        keep.append(idx[: counts[c]])
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def make_long_tailed(
    targets: np.ndarray,
    num_classes: int,
    recipe: str = "ldam",
    profile: str = "exp",
    imbalance_ratio: float = 100.0,
    val_per_class: int = 25,
    pareto_alpha: float = 6.0,
    seed: int = 0,
) -> LongTailResult:
    """Indices of a long-tailed training subset (and, for ``cdb``, a balanced validation set)."""
    targets = np.asarray(targets, dtype=np.int64)
    per_class = _per_class(targets, num_classes)
    available = np.array([len(i) for i in per_class])
    if recipe == "cdb":
        if available.min() <= val_per_class:
            c = int(available.argmin())
            raise DataError(f"class {c} has {available[c]} images, not more than long_tail.val_per_class={val_per_class}; lower it")
        val = np.sort(np.concatenate([idx[-val_per_class:] for idx in per_class]))
        rest = [idx[:-val_per_class] for idx in per_class]
        n_rest = int(max(len(r) for r in rest))
        counts = target_counts("cdb", profile, n_rest, num_classes, imbalance_ratio)
        counts = [min(n, len(r)) for n, r in zip(counts, rest)]
        train = np.sort(np.concatenate([r[:n] for r, n in zip(rest, counts)]))
        return LongTailResult(train=train, val=val, counts=np.asarray(counts, dtype=np.int64))
    if recipe not in ("ldam", "pareto"):
        raise DataError(f"long_tail.recipe '{recipe}' is not one of ldam, cdb, pareto")
    img_max = int(available.max())
    counts = target_counts(recipe, profile, img_max, num_classes, imbalance_ratio, pareto_alpha)
    counts = [min(n, int(a)) for n, a in zip(counts, available)]
    train = ldam_select(targets, counts, seed)
    return LongTailResult(train=train, val=None, counts=np.asarray(counts, dtype=np.int64))


#: the test-set profiles of SADE's test-agnostic protocol
SHIFTS = ("forward", "uniform", "backward")


def shifted_counts(img_max: int, num_classes: int, direction: str, ratio: float) -> list[int]:
    """Per-class counts of a test set whose prior follows (``forward``), reverses (``backward``) or ignores
    (``uniform``) the training profile: ``exp`` counts with ``img_max`` at the first (forward) or the last
    (backward) class and ``img_max / ratio`` at the other end (Vanint/SADE-AgnosticLT
    ``data_loader/imbalance_cifar.py`` with ``reverse``)."""
    if direction not in SHIFTS:
        raise DataError(f"test shift '{direction}' is not one of {', '.join(SHIFTS)}")
    if not ratio >= 1:
        raise DataError(f"test shift ratio must be >= 1 (the largest class count over the smallest), got {ratio}")
    if direction == "uniform":
        return [int(img_max)] * num_classes
    counts = exp_counts(img_max, num_classes, ratio)
    return counts if direction == "forward" else counts[::-1]


def shifted_subset(targets: np.ndarray, num_classes: int, direction: str, ratio: float = 1.0, seed: int = 0) -> np.ndarray:
    """Indices (sorted) of a forward- or backward-skewed, or a uniform, test set drawn from a test split.

    SADE's protocol draws them from the balanced test set: ``img_max`` is the smallest class count
    (every class's count on a balanced split, where ``uniform`` is the whole split), so the ratio holds
    exactly on any split, and each class keeps the first images of a seeded shuffle (``ldam_select``,
    the official ``np.random.seed(0)``)."""
    targets = np.asarray(targets, dtype=np.int64)
    available = np.array([len(i) for i in _per_class(targets, num_classes)])
    if available.min() == 0:
        raise DataError(f"class {int(available.argmin())} has no image in this split, so a shifted test set cannot be drawn from it; "
                        "use a split with every class")
    counts = shifted_counts(int(available.min()), num_classes, direction, ratio)
    return ldam_select(targets, counts, seed)
