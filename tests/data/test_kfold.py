"""k-fold splits (data.split.kind kfold): stratified and grouped fold assignment, the plans of an "all" source and of a
train/test source, the splits.json record, the config errors; and holdout splits exactly as they were before k-fold."""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import pytest
import torch

from longtail.core.errors import ConfigError
from longtail.core.schema import DataConfig
from longtail.data import build_data
from longtail.data.build import plan_splits, splits_from_json, splits_to_json
from longtail.data.dataset import TensorImageDataset
from longtail.data.splits import kfold_assign

TARGETS = np.array([0] * 15 + [1] * 10 + [2] * 5)
PAIRS = np.array([f"g{i // 2}" for i in range(30)])  # two images per group (a lesion photographed twice)


def tensor_split(targets, groups=None, names=("a", "b", "c")) -> TensorImageDataset:
    t = np.asarray(targets)
    return TensorImageDataset(torch.zeros(len(t), 1, 2, 2, dtype=torch.uint8), t, list(names), ids=[f"i{k}" for k in range(len(t))],
                              groups=None if groups is None else np.asarray(groups))


def split_cfg(**split) -> DataConfig:
    return DataConfig(source={"name": "digits"}, split=split)


def lesions(counts=(60, 30, 12), seed=0) -> tuple[np.ndarray, np.ndarray]:
    """Single-class groups of 1-3 images, like HAM10000's lesion_id."""
    rng = np.random.default_rng(seed)
    targets, groups = [], []
    for c, n in enumerate(counts):
        left = n
        while left:
            k = min(int(rng.integers(1, 4)), left)
            targets += [c] * k
            groups += [f"c{c}g{len(groups)}"] * k
            left -= k
    return np.array(targets), np.array(groups)


def held_out(plan) -> dict[str, set[int]]:
    return {part: set() if entry is None else set(entry[1].tolist()) for part, entry in plan.items()}


# ------------------------------------------------------------------------------ fold assignment
@pytest.mark.parametrize("folds", [2, 3, 5])
def test_stratified_folds_are_disjoint_cover_the_data_and_spread_every_class_within_one(folds):
    fold = kfold_assign(TARGETS, None, folds, seed=4)
    assert fold.shape == TARGETS.shape and set(fold.tolist()) == set(range(folds))  # every item in exactly one fold
    for c in range(3):
        counts = np.bincount(fold[TARGETS == c], minlength=folds)
        assert counts.max() - counts.min() <= 1, (c, counts)
    sizes = np.bincount(fold, minlength=folds)
    assert sizes.max() - sizes.min() <= 1  # the deal carries on from class to class


def test_grouped_folds_never_cut_a_group_and_stay_near_even():
    """Tolerance: a group holds one class, so each group goes to the fold with the fewest images of its class (a
    largest-first greedy deal); a class's fold counts then differ by at most its largest group (here 3 images)."""
    targets, groups = lesions()
    fold = kfold_assign(targets, groups, 4, seed=0)
    for g in np.unique(groups):
        assert len(set(fold[groups == g].tolist())) == 1, g
    for c in range(3):
        counts = np.bincount(fold[targets == c], minlength=4)
        largest = max(int((groups == g).sum()) for g in np.unique(groups[targets == c]))
        assert counts.max() - counts.min() <= largest, (c, counts)
        assert counts.min() > 0


def test_folds_are_deterministic_by_seed_and_differ_across_seeds():
    targets, groups = lesions()
    for g in (None, groups):
        a, b, other = kfold_assign(targets, g, 4, seed=1), kfold_assign(targets, g, 4, seed=1), kfold_assign(targets, g, 4, seed=2)
        assert np.array_equal(a, b) and not np.array_equal(a, other)


# ------------------------------------------------------------------------------ plans
@pytest.mark.parametrize("groups", [None, PAIRS])
def test_all_source_holds_out_fold_as_test_and_carves_val_from_the_rest(groups):
    folds, sizes = 3, []
    native = {"all": tensor_split(TARGETS, groups)}
    tests = []
    for i in range(folds):
        plan = plan_splits(native, split_cfg(kind="kfold", folds=folds, fold=i, val=0.2, seed=7), 3)
        assert all(entry[0] == "all" for entry in plan.values())
        parts = held_out(plan)
        assert not parts["train"] & parts["val"] and not parts["train"] & parts["test"] and not parts["val"] & parts["test"]
        assert parts["train"] | parts["val"] | parts["test"] == set(range(30))
        fold = kfold_assign(TARGETS, groups, folds, seed=7)
        assert parts["test"] == set(np.flatnonzero(fold == i).tolist())  # test is fold i
        if groups is not None:  # no pair is cut between train and validation either
            for part in ("train", "val"):
                members = {groups[k] for k in parts[part]}
                assert all(set(np.flatnonzero(groups == g).tolist()) <= parts[part] for g in members)
        sizes.append(len(parts["val"]))
        tests.append(parts["test"])
    assert set().union(*tests) == set(range(30)) and sum(map(len, tests)) == 30  # the test folds partition the data
    assert all(abs(n - 0.2 * 30) <= 2 for n in sizes)  # val / (1 - 1/folds) of the other folds: about data.split.val of all


def test_train_test_source_holds_out_fold_as_val_and_keeps_test():
    train, test = tensor_split([0] * 12 + [1] * 8), tensor_split([0, 0, 1, 1, 1])
    vals = []
    for i in range(4):
        plan = plan_splits({"train": train, "test": test}, split_cfg(kind="kfold", folds=4, fold=i, test=0.3), 2)
        assert plan["test"][0] == "test" and plan["test"][1].tolist() == [0, 1, 2, 3, 4]
        assert plan["train"][0] == plan["val"][0] == "train"
        parts = held_out(plan)
        assert not parts["train"] & parts["val"] and parts["train"] | parts["val"] == set(range(20))
        assert np.bincount(train.targets[plan["val"][1]]).tolist() == [3, 2]
        vals.append(parts["val"])
    assert set().union(*vals) == set(range(20)) and sum(map(len, vals)) == 20


def test_splits_json_records_the_fold_and_round_trips():
    cfg = split_cfg(kind="kfold", folds=3, fold=2)
    b = build_data(cfg, seed=0)
    si = b.split_indices
    assert (si["kind"], si["folds"], si["fold"]) == ("kfold", 3, 2)
    again = build_data(DataConfig(source={"name": "digits"}), seed=0, splits=json.loads(json.dumps(si)))
    assert again.split_indices == si and again.test.ids == b.test.ids and again.val.ids == b.val.ids
    native = {"all": tensor_split(TARGETS)}
    plan = plan_splits(native, cfg, 3)
    back = splits_from_json(splits_to_json(plan, native, "t", {"kind": "kfold", "folds": 3, "fold": 2}), native, "splits")
    assert all(np.array_equal(back[k][1], plan[k][1]) for k in plan)
    assert "kind" not in build_data(DataConfig(source={"name": "digits"}), seed=0).split_indices  # holdout files as before


# ------------------------------------------------------------------------------ holdout unchanged
# plan_splits / build_data output computed with the code before k-fold existed (same fixtures, same configs)
HOLDOUT_ALL = {"train": [2, 3, 4, 5, 6, 7, 10, 12, 13, 16, 17, 18, 20, 21, 22, 25, 26, 28], "val": [0, 1, 8, 15, 24, 29],
               "test": [9, 11, 14, 19, 23, 27]}
HOLDOUT_GROUPED = {"train": [0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 16, 17, 18, 19, 20, 21, 24, 25, 28, 29], "val": [12, 13, 22, 23, 26, 27],
                   "test": [4, 5, 14, 15]}
HOLDOUT_TRAIN_TEST = {"train": [1, 3, 4, 5, 6, 7, 8, 10, 11, 12, 14, 15, 16, 17, 19], "val": [0, 2, 9, 13, 18], "test": [0, 1, 2, 3, 4, 5]}
DIGITS_SHA = {"plain": "a1abb3deedda2f609668da4596ecad49c25808e758c10513fcaed65cc75564a1",
              "long_tail": "bf941218a3b59627cdebb905cb76e01a6fb59306acb66064e6c633825f5f30bd"}


def test_holdout_splits_are_unchanged():
    cfg = split_cfg(val=0.2, test=0.2, seed=3)
    for native, expected in (({"all": tensor_split(TARGETS)}, HOLDOUT_ALL), ({"all": tensor_split(TARGETS, PAIRS)}, HOLDOUT_GROUPED)):
        plan = plan_splits(native, cfg, 3)
        assert {k: v[1].tolist() for k, v in plan.items()} == expected
    plan = plan_splits({"train": tensor_split([0] * 12 + [1] * 8), "test": tensor_split([0, 0, 0, 1, 1, 1])}, split_cfg(val=0.25, seed=1), 3)
    assert {k: v[1].tolist() for k, v in plan.items()} == HOLDOUT_TRAIN_TEST
    for name, extra in (("plain", {}), ("long_tail", {"long_tail": {"recipe": "ldam", "imbalance_ratio": 10}})):
        b = build_data(DataConfig(source={"name": "digits"}, split={"val": 0.2, "test": 0.2}, **extra), seed=0)
        assert hashlib.sha256(json.dumps(b.split_indices, sort_keys=True).encode()).hexdigest() == DIGITS_SHA[name], name


# ------------------------------------------------------------------------------ bad input
def test_a_class_with_fewer_items_than_folds_is_allowed_with_a_warning(caplog):
    native = {"all": tensor_split([0] * 12 + [1] * 9 + [2] * 2)}
    with caplog.at_level(logging.WARNING, logger="longtail"):
        plan = plan_splits(native, split_cfg(kind="kfold", folds=3, fold=0, val=0.2), 3)
    assert "class 'c' has 2 items in the 'all' split, fewer than data.split.folds 3: 1 fold(s) hold none of it" in caplog.text
    assert "class 'a'" not in caplog.text and "class 'b'" not in caplog.text
    assert len(plan["test"][1]) > 0
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="longtail"):  # grouped: counted in groups
        plan_splits({"all": tensor_split(TARGETS, PAIRS)}, split_cfg(kind="kfold", folds=3, fold=0), 3)
    assert "class 'c' has 3 groups" not in caplog.text and "class 'c' has" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="longtail"):
        plan_splits({"all": tensor_split(TARGETS, PAIRS)}, split_cfg(kind="kfold", folds=4, fold=0), 3)
    assert "class 'c' has 3 groups in the 'all' split, fewer than data.split.folds 4" in caplog.text


def test_too_few_items_for_the_folds_names_the_key_and_the_fix():
    with pytest.raises(ConfigError, match=r"^data.split.folds 5 needs at least 5 items in the source's 'all' split, it has 3; lower data.split.folds to 3 or less$"):
        plan_splits({"all": tensor_split([0, 1, 1])}, split_cfg(kind="kfold", folds=5), 2)
    with pytest.raises(ConfigError, match=r"needs at least 4 groups .* it has 3; lower data.split.folds to 3 or less \(or set data.split.group_by_source_groups: false\)"):
        plan_splits({"all": tensor_split([0, 0, 1, 1, 1, 0], ["a", "a", "b", "b", "c", "c"])}, split_cfg(kind="kfold", folds=4), 2)


@pytest.mark.parametrize(("split", "extra", "message"), [
    ({"kind": "kfold", "folds": 3, "fold": 3}, {}, r"data.split.fold 3 is not one of the 3 folds \(data.split.folds\); set data.split.fold to 0..2 or raise data.split.folds"),
    ({"kind": "kfold", "folds": 1}, {}, r"folds"),
    ({"kind": "kfold"}, {"long_tail": {"recipe": "ldam"}}, r"data.split.kind kfold does not combine with a data.long_tail recipe .*; remove data.long_tail"),
])
def test_bad_kfold_configs_are_one_line_errors(split, extra, message):
    with pytest.raises(ValueError, match=message):
        DataConfig(source={"name": "digits"}, split=split, **extra)


def test_val_too_large_for_the_folds_is_refused():
    with pytest.raises(ConfigError, match=r"data.split.val 0.6 leaves no training data: with data.split.folds 2 the other folds hold 0.5 of the data; lower data.split.val"):
        plan_splits({"all": tensor_split(TARGETS)}, split_cfg(kind="kfold", folds=2, val=0.6), 3)
