"""Stratified and grouped-stratified splits, deterministic by seed.

A grouped split keeps every group (e.g. a HAM10000 ``lesion_id``: several photos of one lesion)
inside one split, so validation/test never see a lesion the model was trained on. It is a greedy
assignment: groups in a seeded random order, largest first, each going to the split whose
per-class deficit it reduces most (a squared error against the target counts, scaled per class).
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
    targets = np.asarray(targets)
    _, g_index = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    classes, t_index = np.unique(targets, return_inverse=True)
    n_groups, n_classes = int(g_index.max()) + 1, len(classes)
    g_counts = np.zeros((n_groups, n_classes), dtype=np.float64)
    np.add.at(g_counts, (g_index, t_index), 1.0)
    fr = np.asarray([1.0 - float(sum(fractions)), *[float(f) for f in fractions]])
    if fr[0] < 0:
        raise ValueError("split fractions add up to more than 1")
    total = g_counts.sum(0)
    goal = fr[:, None] * total[None, :]  # parts x classes
    have = np.zeros_like(goal)
    scale = 1.0 / np.maximum(total, 1.0)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_groups)
    order = order[np.argsort(-g_counts[order].sum(1), kind="stable")]
    assign = np.empty(n_groups, dtype=np.int64)
    for g in order:
        v = g_counts[g]
        cost = ((2.0 * v * (have - goal) + v * v) * scale).sum(1)
        cost[fr <= 0] = np.inf
        k = int(np.argmin(cost))
        assign[g] = k
        have[k] += v
    item_part = assign[g_index]
    return [np.flatnonzero(item_part == k) for k in range(len(fr))]
