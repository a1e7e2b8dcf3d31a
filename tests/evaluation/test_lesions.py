"""Lesion-level aggregation: by hand, against a pandas group-by, order, labels, and the identity on singletons."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from longtail.core.errors import DataError
from longtail.evaluation.lesions import MISSING_ID_PREFIX, aggregate_by_group, first_appearance


def random_probs(rng: np.random.Generator, n: int, c: int, dtype=np.float64) -> np.ndarray:
    z = rng.normal(size=(n, c))
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(dtype)


def test_hand_computed_means_targets_and_first_appearance_order():
    probs = np.array([[0.8, 0.2], [0.1, 0.9], [0.4, 0.6], [0.5, 0.5], [0.3, 0.7]])
    targets = np.array([0, 1, 0, -1, 1])
    p, y, ids = aggregate_by_group(probs, targets, ["L2", "L1", "L2", "L3", "L1"])
    assert ids == ["L2", "L1", "L3"]  # first appearance, not sorted
    np.testing.assert_allclose(p, [[0.6, 0.4], [0.2, 0.8], [0.5, 0.5]], atol=1e-15)
    assert y.tolist() == [0, 1, -1] and y.dtype == np.int64
    np.testing.assert_allclose(p.sum(axis=1), 1.0)


def test_matches_a_pandas_groupby_mean():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    n, c = 400, 7
    ids = [f"HAM_{k:04d}" for k in rng.integers(0, 150, n)]
    lesion_label = {i: int(rng.integers(0, c)) for i in set(ids)}
    targets = np.array([lesion_label[i] for i in ids])
    probs = random_probs(rng, n, c)
    p, y, out_ids = aggregate_by_group(probs, targets, ids)
    ref = pd.DataFrame(probs).groupby(pd.Series(ids), sort=False).mean()
    assert out_ids == ref.index.tolist() == list(dict.fromkeys(ids))
    np.testing.assert_allclose(p, ref.to_numpy(), rtol=0, atol=1e-12)
    assert y.tolist() == [lesion_label[i] for i in out_ids]


def test_unlabelled_images_keep_minus_one_only_when_the_whole_lesion_is():
    probs = np.full((5, 3), 1 / 3)
    targets = np.array([-1, 2, -1, -1, -1])
    _, y, ids = aggregate_by_group(probs, targets, ["a", "a", "b", "b", "c"])
    assert ids == ["a", "b", "c"] and y.tolist() == [2, -1, -1]


def test_label_conflict_is_a_one_line_error_naming_lesion_and_classes():
    names = ["mel", "nv", "bcc", "akiec", "bkl", "df", "vasc"]
    probs = np.full((4, 7), 1 / 7)
    with pytest.raises(DataError) as e:
        aggregate_by_group(probs, np.array([3, 0, -1, 1]), ["HAM_0002", "HAM_0001", "HAM_0001", "HAM_0001"], class_names=names)
    assert str(e.value) == "lesion 'HAM_0001' has images labelled 'mel' and 'nv'; fix the labels"
    with pytest.raises(DataError) as e:
        aggregate_by_group(probs, np.array([0, 1, 4, 4]), ["x"] * 4)
    assert str(e.value) == "lesion 'x' has images labelled '0', '1' and '4'; fix the labels"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_group_of_size_one_returns_the_input_unchanged(dtype):
    rng = np.random.default_rng(3)
    probs = random_probs(rng, 50, 4, dtype)
    targets = rng.integers(-1, 4, 50)
    ids = [f"img{k}" for k in rng.permutation(50)]
    p, y, out_ids = aggregate_by_group(probs, targets, ids)
    assert p.dtype == probs.dtype and np.array_equal(p, probs)
    assert np.array_equal(y, targets) and out_ids == ids


def test_images_without_a_lesion_id_are_lesions_of_their_own(caplog):
    probs = np.array([[0.2, 0.8], [0.6, 0.4], [0.4, 0.6], [0.9, 0.1]])
    with caplog.at_level(logging.WARNING, logger="longtail"):
        p, y, ids = aggregate_by_group(probs, np.array([1, 0, 1, 0]), ["L1", None, "L1", np.nan])
    assert ids == ["L1", f"{MISSING_ID_PREFIX}1", f"{MISSING_ID_PREFIX}3"]
    np.testing.assert_allclose(p, [[0.3, 0.7], [0.6, 0.4], [0.9, 0.1]])
    assert y.tolist() == [1, 0, 0]
    assert [r.getMessage() for r in caplog.records] == [
        "2 of 4 images have no lesion id; each counts as a lesion of its own (fill the lesion_id column to group them)"]


def test_first_appearance_numbers_groups_in_order():
    index, ids = first_appearance(["b", "a", "b", "c", "a"])
    assert ids == ["b", "a", "c"] and index.tolist() == [0, 1, 0, 2, 1]


@pytest.mark.parametrize("probs, targets, ids, text", [
    (np.array([[2.0, -1.0], [0.5, 0.5]]), [0, 1], ["a", "b"], "not logits"),
    (np.array([[np.nan, 1.0], [0.5, 0.5]]), [0, 1], ["a", "b"], "not logits"),
    (np.array([0.5, 0.5]), [0], ["a"], "N x C array"),
    (np.array([[1, 0], [0, 1]]), [0, 1], ["a", "b"], "N x C array"),
    (np.full((2, 2), 0.5), [0], ["a", "b"], "1 targets for 2 probability rows"),
    (np.full((2, 2), 0.5), [0, 2], ["a", "b"], "target 2 is outside -1..1"),
    (np.full((2, 2), 0.5), [0, 0.5], ["a", "b"], "class indices"),
    (np.full((2, 2), 0.5), [0, 1], ["a"], "1 lesion ids for 2 images"),
])
def test_bad_inputs_are_one_line_errors(probs, targets, ids, text):
    with pytest.raises(DataError) as e:
        aggregate_by_group(probs, np.asarray(targets), ids)
    assert text in str(e.value) and "\n" not in str(e.value)
