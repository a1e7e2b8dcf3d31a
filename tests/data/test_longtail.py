"""Long-tail builders: exact counts of the LDAM and CDB recipes, LDAM's seeded selection, splits."""

import numpy as np
import pytest

from longtail.core.errors import DataError
from longtail.data.longtail import exp_counts, make_long_tailed, pareto_counts, step_counts
from longtail.data.splits import grouped_stratified_split, stratified_split


def balanced(per_class: int, classes: int) -> np.ndarray:
    return np.repeat(np.arange(classes), per_class)


@pytest.mark.parametrize("classes,per_class,expected", [(10, 5000, 12406), (100, 500, 10847)])
def test_cifar_lt_ir100_totals(classes, per_class, expected):
    res = make_long_tailed(balanced(per_class, classes), classes, recipe="ldam", imbalance_ratio=100)
    assert len(res.train) == expected == res.counts.sum()


@pytest.mark.parametrize("ratio", [10, 100, 200])
@pytest.mark.parametrize("classes,per_class", [(10, 5000), (100, 500)])
def test_ldam_counts_match_formula(ratio, classes, per_class):
    targets = np.tile(np.arange(classes), per_class)  # interleaved, like CIFAR's own order
    for profile in ("exp", "step"):
        res = make_long_tailed(targets, classes, recipe="ldam", profile=profile, imbalance_ratio=ratio)
        if profile == "exp":
            want = [int(per_class * (1.0 / ratio) ** (i / (classes - 1.0))) for i in range(classes)]
        else:
            want = [per_class] * (classes // 2) + [int(per_class / ratio)] * (classes // 2)
        assert np.bincount(targets[res.train], minlength=classes).tolist() == want
        assert res.val is None


def test_ldam_selection_equals_reference_shuffle():
    """Same images as LDAM-DRW's np.random.seed(0) + np.random.shuffle per class."""
    targets = np.tile(np.arange(10), 300)
    counts = exp_counts(300, 10, 100)
    np.random.seed(0)
    want = []
    for c in range(10):
        idx = np.where(targets == c)[0]
        np.random.shuffle(idx)
        want.extend(idx[: counts[c]].tolist())
    res = make_long_tailed(targets, 10, recipe="ldam", imbalance_ratio=100, seed=0)
    assert res.train.tolist() == sorted(want)
    again = make_long_tailed(targets, 10, recipe="ldam", imbalance_ratio=100, seed=0)
    other = make_long_tailed(targets, 10, recipe="ldam", imbalance_ratio=100, seed=1)
    assert np.array_equal(res.train, again.train) and not np.array_equal(res.train, other.train)


@pytest.mark.parametrize("ratio", [10, 100, 200])
def test_cdb_recipe_first_k_and_last_val(ratio):
    classes, per_class, val = 100, 500, 25
    targets = np.tile(np.arange(classes), per_class)
    res = make_long_tailed(targets, classes, recipe="cdb", imbalance_ratio=ratio, val_per_class=val)
    want = [int(475 * (1.0 / ratio) ** (i / 99.0)) for i in range(classes)]
    assert np.bincount(targets[res.train], minlength=classes).tolist() == want
    assert np.bincount(targets[res.val], minlength=classes).tolist() == [val] * classes
    for c in (0, 57, 99):
        idx = np.flatnonzero(targets == c)
        assert set(res.val[targets[res.val] == c]) == set(idx[-val:])  # the LAST 25
        assert set(res.train[targets[res.train] == c]) == set(idx[: want[c]])  # the FIRST n_i
    assert not set(res.train) & set(res.val)


def test_step_profile_odd_classes_and_pareto_endpoints():
    assert step_counts(100, 5, 10) == [100, 100, 10, 10, 10]
    p = pareto_counts(1000, 10, 50, alpha=6)
    assert p[0] == 1000 and p[-1] == 20 and all(a >= b for a, b in zip(p, p[1:]))
    assert p[1] < exp_counts(1000, 10, 50)[1]  # heavier drop right after the head than exp


def test_counts_capped_by_availability_and_cdb_too_small():
    targets = np.concatenate([np.zeros(100), np.ones(3)]).astype(int)
    res = make_long_tailed(targets, 2, imbalance_ratio=2)
    assert res.counts.tolist() == [100, 3]
    with pytest.raises(DataError, match="val_per_class"):
        make_long_tailed(targets, 2, recipe="cdb", val_per_class=5)


def test_stratified_split_ratio_and_count():
    targets = np.repeat([0, 1, 2], [100, 50, 10])
    rest, val, test = stratified_split(targets, [0.1, 0.2], seed=3)
    assert np.bincount(targets[val]).tolist() == [10, 5, 1]
    assert np.bincount(targets[test]).tolist() == [20, 10, 2]
    assert len(set(rest) | set(val) | set(test)) == 160 and not set(rest) & set(val)
    rest2, fixed = stratified_split(targets, [4], seed=3)
    assert np.bincount(targets[fixed]).tolist() == [4, 4, 4]
    assert np.array_equal(stratified_split(targets, [0.1, 0.2], seed=3)[1], val)


def test_grouped_split_keeps_groups_together_and_stratifies():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(600), rng.integers(1, 4, 600))
    group_class = rng.choice(5, 600, p=[0.6, 0.2, 0.1, 0.07, 0.03])
    targets = group_class[groups]
    parts = grouped_stratified_split(targets, groups.astype(str), [0.1, 0.2], seed=0)
    sets = [set(groups[p]) for p in parts]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert sum(len(p) for p in parts) == len(targets)
    frac = np.array([len(p) for p in parts]) / len(targets)
    assert np.allclose(frac, [0.7, 0.1, 0.2], atol=0.02)
    for c in range(5):
        n_c = (targets == c).sum()
        assert abs((targets[parts[2]] == c).sum() - 0.2 * n_c) <= max(3, 0.1 * n_c)
    again = grouped_stratified_split(targets, groups.astype(str), [0.1, 0.2], seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
