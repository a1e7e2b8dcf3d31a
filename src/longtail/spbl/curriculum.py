"""The arithmetic of self-paced balance learning, on plain arrays (no model, no I/O).

Each function is one step of SPBL's pace (Yang et al., TNNLS 2020; ``../shared/spec/seeds.md``
section 1.4), so every step can be checked by hand on small arrays:

0. :func:`initial_split`: per class, ``ceil(train_ratio * n_c)`` images start training, the rest
   form the curriculum pool (its labels are known; it is not unlabelled data).
a. :func:`select_per_class`: the top ``ceil(r * |U_c|)`` pool images of every class by own-class score.
b. :func:`class_complexity`: ``H_c = |U_c| / exp(mean -log p)``, rescaled onto the pool counts' range.
c. the cost vector is :func:`longtail.losses.spbl_cost_vector` (the consistent cost generator).
d. :func:`reconstruction_deltas`: how many feature rows to add or drop per class.
f. :func:`resample_block`: one pace's feature block, duplicated / subsampled / SMOTE-d per class.
g. :func:`stored_weight_factor`: how a block's SVM weights shrink once a later pace has been fitted.
"""

from __future__ import annotations

import math

import numpy as np

from ..core.errors import LongtailError

#: a selected sample with an own-class score of 0 would give -log 0 = inf
MIN_PROBABILITY = 1e-12


def initial_split(targets: np.ndarray, train_ratio: float, num_classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(initial set, pool): per class, a shuffled ``ceil(train_ratio * n_c)`` start and the rest.

    Positions index ``targets``; both outputs are sorted. Every class with images keeps at least
    one image in the initial set, so the first SVM sees every class.
    """
    if not 0.0 < train_ratio <= 1.0:
        raise LongtailError(f"spbl.train_ratio={train_ratio} must lie in (0, 1]")
    y = np.asarray(targets, dtype=np.int64)
    initial, pool = [], []
    for c in range(num_classes):
        members = np.flatnonzero(y == c)
        members = members[rng.permutation(len(members))]
        k = math.ceil(train_ratio * len(members))
        initial.append(members[:k])
        pool.append(members[k:])
    return np.sort(np.concatenate(initial)), np.sort(np.concatenate(pool))


def select_per_class(pool_targets: np.ndarray, scores: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Self-paced selection: per class the ``min(ceil(ratio * |U_c|), |U_c|)`` pool items with the
    highest own-class score ``scores[i, c]`` (the easiest first).

    Returns (sorted positions into the pool, selected count per class). Ties keep pool order.
    """
    if not 0.0 <= ratio <= 1.0:
        raise LongtailError(f"spbl.add_ratios: {ratio} must lie in [0, 1]")
    y = np.asarray(pool_targets, dtype=np.int64)
    num_classes = scores.shape[1]
    chosen, counts = [], np.zeros(num_classes, dtype=np.int64)
    for c in range(num_classes):
        members = np.flatnonzero(y == c)
        k = min(math.ceil(ratio * len(members)), len(members))
        order = np.argsort(-scores[members, c], kind="stable")
        chosen.append(members[order[:k]])
        counts[c] = k
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64), counts


def class_complexity(pool_targets: np.ndarray, scores: np.ndarray, selected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(raw H, rescaled H) per class: ``H_c = |U_c| / exp(L_c)``, ``L_c`` = mean ``-log p`` of the
    selected items of class c (0 when none is selected).

    Large H = many and easy images. The rescaled H maps min H to ``min_c |U_c|`` and max H to
    ``max_c |U_c|`` linearly, then takes the ceiling, as SPBL does; when every H is equal, every
    class gets ``max_c |U_c|``. Only the order of H is used downstream; the scale is for reading.
    """
    y = np.asarray(pool_targets, dtype=np.int64)
    num_classes = scores.shape[1]
    pool_counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    loss = np.zeros(num_classes)
    ys = y[selected]
    for c in range(num_classes):
        rows = selected[ys == c]
        if len(rows):
            loss[c] = float(np.mean(-np.log(np.maximum(scores[rows, c], MIN_PROBABILITY))))
    raw = pool_counts / np.exp(loss)
    lo, hi = raw.min(), raw.max()
    if hi - lo <= 0:
        return raw, np.full(num_classes, pool_counts.max())
    scaled = (raw - lo) / (hi - lo) * (pool_counts.max() - pool_counts.min()) + pool_counts.min()
    return raw, np.ceil(scaled - 1e-9)


def reconstruction_deltas(selected_counts: np.ndarray, complexity: np.ndarray, cap: int = 100, shrink_factor: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """(target count, delta) per class for the curriculum rebuilt at feature level.

    The selected counts sorted ascending are handed out in order of decreasing H: the easiest,
    largest class gets the smallest count, the most complex class the largest. ``delta = target - k``,
    then: a positive delta is capped at ``cap``; for a negative delta, with ``m = shrink_factor *
    ceil(mean k)``, a class with ``k < m`` is left alone (delta 0), a class whose target is below ``m``
    is cut to ``m`` only (delta ``m - k``), and the others keep their delta.
    """
    k = np.asarray(selected_counts, dtype=np.int64)
    h = np.asarray(complexity, dtype=np.float64)
    if k.shape != h.shape:
        raise LongtailError(f"spbl: {len(k)} selected counts but {len(h)} complexities")
    target = np.empty_like(k)
    target[np.argsort(-h, kind="stable")] = np.sort(k, kind="stable")
    delta = target - k
    m = int(shrink_factor * math.ceil(k.mean())) if len(k) else 0
    for c in range(len(k)):
        if delta[c] > 0:
            delta[c] = min(delta[c], cap)
        elif delta[c] < 0:
            if k[c] < m:
                delta[c] = 0
            elif target[c] < m:
                delta[c] = min(0, m - k[c])
    return target, delta


def resample_block(
    features: np.ndarray,
    labels: np.ndarray,
    delta: np.ndarray,
    rng: np.random.Generator,
    method: str = "duplicate",
    smote_k: int = 2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pace's feature block, rebuilt per class by ``delta``.

    ``delta_c > 0``: every row plus ``delta_c`` more (random duplicates, or SMOTE interpolations
    with ``method='smote'``); ``0``: every row; ``< 0``: ``n_c + delta_c`` rows drawn with
    replacement. Returns (features, labels, source row or -1 for a synthetic SMOTE row), grouped by
    class in class order. SMOTE needs ``smote_k + 1`` rows of a class; a smaller class is duplicated.
    """
    x = np.asarray(features)
    y = np.asarray(labels, dtype=np.int64)
    feats, labs, sources = [], [], []
    for c, d in enumerate(np.asarray(delta, dtype=np.int64)):
        members = np.flatnonzero(y == c)
        if len(members) == 0:
            continue
        if d < 0:
            rows = rng.choice(members, size=max(len(members) + int(d), 0), replace=True)
            feats.append(x[rows]), labs.append(y[rows]), sources.append(rows)
            continue
        feats.append(x[members]), labs.append(y[members]), sources.append(members)
        if d == 0:
            continue
        if method == "smote" and len(members) > smote_k:
            synthetic = smote_rows(x[members], int(d), smote_k, rng)
            feats.append(synthetic), labs.append(np.full(len(synthetic), c)), sources.append(np.full(len(synthetic), -1))
        else:
            rows = rng.choice(members, size=int(d), replace=True)
            feats.append(x[rows]), labs.append(y[rows]), sources.append(rows)
    if not feats:
        return x[:0], y[:0], np.zeros(0, dtype=np.int64)
    return np.concatenate(feats), np.concatenate(labs).astype(np.int64), np.concatenate(sources).astype(np.int64)


def smote_rows(x: np.ndarray, n_new: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``n_new`` SMOTE rows of one class (imbalanced-learn's ``SMOTE``, seeded from ``rng``)."""
    from imblearn.over_sampling import SMOTE

    other = np.zeros((1, x.shape[1]), dtype=x.dtype)  # SMOTE wants two classes; the dummy is left as is
    xs = np.concatenate([x, other])
    ys = np.concatenate([np.ones(len(x), dtype=np.int64), [0]])
    sampler = SMOTE(sampling_strategy={1: len(x) + n_new}, k_neighbors=k, random_state=int(rng.integers(2**31 - 1)))
    out_x, _ = sampler.fit_resample(xs, ys)
    return out_x[len(xs):].astype(x.dtype)


def stored_weight_factor(ratio: float, train_ratio: float) -> float:
    """After a pace's SVM fit, its block's weights are multiplied by ``r (1 - train_ratio) + train_ratio``:
    the share of the training set the block stood for (``train_ratio`` for the first pace, r = 0)."""
    return ratio * (1.0 - train_ratio) + train_ratio
