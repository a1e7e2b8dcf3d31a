"""data.classes: keep a subset of the source's classes or merge them into groups, before any split."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import longtail
from longtail import rundir
from longtail.catalog.check import load_config
from longtail.core.errors import ConfigError
from longtail.data import build_data
from longtail.data.classes import relabel
from longtail.data.dataset import TensorImageDataset

from ..helpers import tiny_config

DIGITS = load_digits().target


def data_cfg(tmp_path, classes):
    return load_config(raw=tiny_config(tmp_path, data={"long_tail": None, "classes": classes})).data


def original_labels(ds) -> np.ndarray:
    """The digit of every item, read back from its id (``digits_0042`` is image 42 of load_digits)."""
    return DIGITS[[int(i.split("_")[1]) for i in ds.ids]]


def test_keep_takes_only_the_named_classes_in_the_given_order(tmp_path):
    bundle = build_data(data_cfg(tmp_path, {"keep": ["7", "3"]}), seed=0)
    assert bundle.class_names == ["7", "3"] and bundle.class_map == {"7": ["7"], "3": ["3"]}
    parts = [bundle.train, bundle.val, bundle.test]
    for ds in parts:
        assert np.array_equal(original_labels(ds), np.where(ds.targets == 0, 7, 3))
    # every 3 and 7 of the source is in exactly one split, nothing else is
    assert sum(len(ds) for ds in parts) == int(np.isin(DIGITS, [3, 7]).sum())
    assert bundle.train_counts.tolist() == [int((original_labels(bundle.train) == d).sum()) for d in (7, 3)]


def test_merge_groups_classes_and_drops_the_unnamed_ones(tmp_path):
    groups = {"low": ["0", "1", "2"], "high": ["7", "8", "9"]}
    bundle = build_data(data_cfg(tmp_path, {"merge": groups}), seed=0)
    assert bundle.class_names == ["low", "high"] and bundle.class_map == groups
    for ds in (bundle.train, bundle.val, bundle.test):
        digits = original_labels(ds)
        assert np.array_equal(ds.targets, np.where(digits <= 2, 0, 1)) and not np.isin(digits, [3, 4, 5, 6]).any()
    assert sum(len(ds) for ds in (bundle.train, bundle.val, bundle.test)) == int(np.isin(DIGITS, [0, 1, 2, 7, 8, 9]).sum())


def test_unlabelled_items_and_groups_survive_relabelling():
    ds = TensorImageDataset(torch.zeros(5, 1, 2, 2, dtype=torch.uint8), [0, 1, -1, 2, 1], ["a", "b", "c"],
                            ids=list("vwxyz"), groups=["g1", "g2", "g3", "g4", "g5"])
    out = relabel(ds, np.array([-2, 1, 0]), ["c", "b"])  # drop a, b -> 1, c -> 0
    assert out.ids == ["w", "x", "y", "z"] and out.targets.tolist() == [1, -1, 0, 1]
    assert out.groups.tolist() == ["g2", "g3", "g4", "g5"] and out.class_names == ["c", "b"]


@pytest.mark.parametrize("classes, message", [
    ({"keep": ["3", "eleven"]}, "data.classes: 'eleven' is not a class of this source; its classes are: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9"),
    ({"merge": {"a": ["1", "2"], "b": ["2", "3"]}}, "data.classes: class '2' is named twice; give each source class to one group only"),
])
def test_unknown_or_repeated_class_is_a_one_line_error(tmp_path, classes, message):
    with pytest.raises(ConfigError) as err:
        build_data(data_cfg(tmp_path, classes), seed=0)
    assert str(err.value) == message


@pytest.mark.parametrize("classes, message", [
    ({"keep": ["1", "2"], "merge": {"a": ["3"]}}, "set exactly one of keep"),
    ({}, "set exactly one of keep"),
    ({"keep": ["1"]}, "at least 2 classes, this rule leaves 1"),
    ({"merge": {"a": ["1"], "b": []}}, "every merge group needs at least one source class"),
])
def test_config_rules(tmp_path, classes, message):
    with pytest.raises(ConfigError, match=message):
        data_cfg(tmp_path, classes)


def test_the_run_records_the_mapping(tmp_path):
    groups = {"even": ["0", "2", "4", "6", "8"], "odd": ["1", "3", "5", "7", "9"]}
    result = longtail.train(tiny_config(tmp_path, data={"classes": {"merge": groups}}, train={"epochs": 1}))
    meta = json.loads((result.run_dir / "data.json").read_text())
    assert meta["class_names"] == ["even", "odd"] and meta["class_map"] == groups
    assert result.results["class_map"] == groups and result.results["class_names"] == ["even", "odd"]
    preds = np.load(result.run_dir / rundir.PREDICTIONS / "test.npz")
    assert preds["logits"].shape[1] == 2
