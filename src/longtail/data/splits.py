"""Stratified and grouped-stratified splits, deterministic by seed.

A grouped split keeps every group (e.g. a HAM10000 ``lesion_id``: several photos of one lesion)
inside one split, so validation/test never see a lesion the model was trained on. It is a greedy
assignment: groups in a seeded random order, largest first, each going to the split whose
per-class deficit it reduces most (a squared error against the target counts, scaled per class).

K-fold assignment (:func:`kfold_assign`) is the same idea with k equal parts: stratified round-robin
over the folds without groups, the greedy grouped assignment with groups.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _n_take(n: int, amount: float | int) -> int:
    """A fraction (float < 1) or a count (int >= 1) of ``n`` items, never more than n."""
    if isinstance(amount, (int, np.integer)) and not isinstance(amount, bool) and amount >= 1:
        return min(int(amount), n)
    return min(int(round(float(amount) * n)), n)


def stratified_split(
    targets: np.ndarray, amounts: Sequence[float | int], seed: int = 0
) -> list[np.ndarray]:
    """Per class, shuffle (seeded) and cut off ``amounts[k]`` (fraction or per-class count) for each
    extra part; the first returned part is the remainder. Returns sorted index arrays."""
    targets = np.asarray(targets)
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(len(amounts) + 1)]
    for c in np.unique(targets):
        idx = np.flatnonzero(targets == c)
        idx = idx[rng.permutation(len(idx))]
        start = 0
        for k, amount in enumerate(amounts):
            n = _n_take(len(idx), amount)
            n = min(n, len(idx) - start)
            parts[k + 1].append(idx[start : start + n])
            start += n
        parts[0].append(idx[start:])
    return [np.sort(np.concatenate(p)) if p else np.zeros(0, dtype=np.int64) for p in parts]


def grouped_stratified_split(
    targets: np.ndarray, groups: np.ndarray, fractions: Sequence[float], seed: int = 0
) -> list[np.ndarray]:
    """Like :func:`stratified_split` with fractions, but no group is cut across parts."""
    fr = np.asarray([1.0 - float(sum(fractions)), *[float(f) for f in fractions]])
    if fr[0] < 0:
        raise ValueError("split fractions add up to more than 1")
    item_part = _grouped_parts(targets, groups, fr, seed)
    return [np.flatnonzero(item_part == k) for k in range(len(fr))]


def _grouped_parts(targets: np.ndarray, groups: np.ndarray, shares: np.ndarray, seed: int) -> np.ndarray:
    """The part of every item when whole groups are dealt greedily to parts of the given ``shares``
    (largest groups first, each to the part whose per-class deficit it reduces most)."""
    targets = np.asarray(targets)
    _, g_index = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    classes, t_index = np.unique(targets, return_inverse=True)
    n_groups, n_classes = int(g_index.max()) + 1, len(classes)
    g_counts = np.zeros((n_groups, n_classes), dtype=np.float64)
    np.add.at(g_counts, (g_index, t_index), 1.0)
    total = g_counts.sum(0)
    goal = shares[:, None] * total[None, :]  # parts x classes
    have = np.zeros_like(goal)
    scale = 1.0 / np.maximum(total, 1.0)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_groups)
    order = order[np.argsort(-g_counts[order].sum(1), kind="stable")]
    assign = np.empty(n_groups, dtype=np.int64)
    for g in order:
        v = g_counts[g]
        cost = ((2.0 * v * (have - goal) + v * v) * scale).sum(1)
        cost[shares <= 0] = np.inf
        k = int(np.argmin(cost))
        assign[g] = k
        have[k] += v
    return assign[g_index]


def kfold_assign(targets: np.ndarray, groups: np.ndarray | None, folds: int, seed: int = 0) -> np.ndarray:
    """The fold (0 .. folds-1) of every item: stratified, and with ``groups`` no group cut across folds.

    Without groups each class is shuffled (seeded) and dealt round-robin, the deal carrying on from
    class to class, so a class's fold counts differ by at most 1 and so do the fold sizes. With
    groups, whole groups are dealt greedily to k equal parts (as :func:`grouped_stratified_split`)."""
    targets = np.asarray(targets)
    if folds < 2:
        raise ValueError(f"k-fold needs at least 2 folds, got {folds}")
    if groups is not None:
        return _grouped_parts(targets, groups, np.full(folds, 1.0 / folds), seed)
    rng = np.random.default_rng(seed)
    fold = np.empty(len(targets), dtype=np.int64)
    next_fold = 0
    for c in np.unique(targets):
        idx = np.flatnonzero(targets == c)
        idx = idx[rng.permutation(len(idx))]
        fold[idx] = (next_fold + np.arange(len(idx))) % folds
        next_fold = (next_fold + len(idx)) % folds
    return fold


def units_per_class(targets: np.ndarray, groups: np.ndarray | None) -> dict[int, int]:
    """Per class, what k-fold spreads over the folds: its items, or with ``groups`` the groups holding it."""
    targets = np.asarray(targets)
    if groups is None:
        values, counts = np.unique(targets, return_counts=True)
        return {int(c): int(n) for c, n in zip(values, counts)}
    g = np.asarray(groups).astype(str)
    return {int(c): len(np.unique(g[targets == c])) for c in np.unique(targets)}
