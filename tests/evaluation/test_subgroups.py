"""Subgroup tables: against fairlearn's MetricFrame, by hand, and the n/a, missing-value and error rules."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score

from longtail.core.errors import ConfigError, DataError, LongtailError
from longtail.evaluation.subgroups import UNKNOWN, age_bands, group_labels, subgroup_table


def synthetic(seed: int = 0, n: int = 900, num_classes: int = 4):
    """Imbalanced labels, ~70% correct predictions, a sex-like column with missing values; group 'x' lacks class 3."""
    rng = np.random.default_rng(seed)
    y = rng.choice(num_classes, size=n, p=[0.55, 0.25, 0.15, 0.05])
    pred = np.where(rng.random(n) < 0.7, y, rng.integers(0, num_classes, n))
    groups = rng.choice(np.array(["female", "male", "x", None, np.nan, ""], dtype=object), size=n, p=[0.4, 0.35, 0.1, 0.05, 0.05, 0.05])
    y[(groups == "x") & (y == 3)] = 0  # a class absent from one group: its balanced accuracy averages 3 recalls
    return y, pred, groups


def test_matches_fairlearn_metricframe_by_group():
    pd = pytest.importorskip("pandas")
    MetricFrame = pytest.importorskip("fairlearn.metrics").MetricFrame  # the reference (a test-only dependency)

    y, pred, groups = synthetic()
    positive = [2, 3]
    table = subgroup_table(y, pred, groups, "sex", num_classes=4, positive=positive, min_count=0)
    filled = np.asarray([UNKNOWN if pd.isna(g) or g == "" else g for g in groups], dtype=object)

    def sensitivity(t, p):
        return recall_score(np.isin(t, positive), np.isin(p, positive))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn: "y_pred contains classes not in y_true" in group 'x'
        frame = MetricFrame(metrics={"balanced_accuracy": balanced_accuracy_score, "accuracy": accuracy_score, "sensitivity": sensitivity,
                                     "n": lambda t, p: len(t)},
                            y_true=y, y_pred=pred, sensitive_features=filled).by_group
    rows = {r["group"]: r for r in table["groups"]}
    assert sorted(rows) == sorted(frame.index.tolist()) == ["female", "male", "unknown", "x"]
    for g, ref in frame.iterrows():
        assert rows[g]["n"] == ref["n"]
        for key in ("balanced_accuracy", "accuracy", "sensitivity"):
            assert rows[g][key] == pytest.approx(ref[key], abs=1e-12), (g, key)
    scores = {g: r["balanced_accuracy"] for g, r in rows.items()}
    assert table["worst"] == min(scores, key=scores.get) and table["best"] == max(scores, key=scores.get)
    assert table["gap"] == pytest.approx(max(scores.values()) - min(scores.values()), abs=1e-12)
    assert not (y[filled == "x"] == 3).any()  # the group really lacks a class


def hand_case():
    y = np.array([0, 0, 1, 1, 2, 0, 1, 1])
    pred = np.array([0, 1, 1, 1, 0, 0, 0, 1])
    groups = np.array(["a", "a", "a", "a", "a", "b", "b", "b"])
    return y, pred, groups


def test_hand_computed_rows_worst_best_gap():
    y, pred, groups = hand_case()
    t = subgroup_table(y, pred, groups, "site", num_classes=3, positive=[1, 2], min_count=1)
    a, b = t["groups"]
    # a: recalls 1/2 (class 0), 2/2 (class 1), 0/1 (class 2) -> 0.5; 3 of 5 right; positives {1, 2}: y = 1, 1, 2 -> pred 1, 1, 0
    assert a == {"group": "a", "n": 5, "reported": True, "balanced_accuracy": pytest.approx(0.5), "accuracy": pytest.approx(0.6),
                 "sensitivity": pytest.approx(2 / 3)}
    # b: class 2 absent, so the mean runs over classes 0 (1/1) and 1 (1/2); positives y = 1, 1 -> pred 0, 1
    assert b == {"group": "b", "n": 3, "reported": True, "balanced_accuracy": pytest.approx(0.75), "accuracy": pytest.approx(2 / 3),
                 "sensitivity": pytest.approx(0.5)}
    assert (t["worst"], t["best"], t["gap"]) == ("a", "b", pytest.approx(0.25))
    assert t["column"] == "site" and t["split"] == "test" and t["positive"] == [1, 2] and t["min_count"] == 1


def test_min_count_makes_small_groups_na_and_out_of_worst_best(caplog):
    y, pred, groups = hand_case()
    t = subgroup_table(y, pred, groups, "site", num_classes=3, positive=[1], min_count=4)
    a, b = t["groups"]
    assert b == {"group": "b", "n": 3, "reported": False, "balanced_accuracy": None, "accuracy": None, "sensitivity": None}
    assert a["reported"] and a["balanced_accuracy"] == pytest.approx(0.5)
    assert (t["worst"], t["best"], t["gap"]) == ("a", "a", 0.0)  # one reported group: no gap to speak of
    # the default threshold is 30, so this toy split reports nothing: n/a everywhere, with one warning line
    with caplog.at_level(logging.WARNING, logger="longtail"):
        t = subgroup_table(y, pred, groups, "site", num_classes=3)
    assert all(not r["reported"] for r in t["groups"]) and (t["worst"], t["best"], t["gap"]) == (None, None, None)
    assert [r.getMessage() for r in caplog.records] == [
        "no group of 'site' on test has 30 images, so every row is n/a; lower eval.subgroup_min_count to report them"]


def test_sensitivity_none_without_positive_set_or_positive_images():
    y, pred, groups = hand_case()
    t = subgroup_table(y, pred, groups, "site", num_classes=3, min_count=0)
    assert all(r["sensitivity"] is None for r in t["groups"]) and t["positive"] is None
    t = subgroup_table(y, pred, groups, "site", num_classes=3, positive=[2], min_count=0)
    assert [r["sensitivity"] for r in t["groups"]] == [0.0, None]  # group b has no image of class 2


def test_tied_worst_goes_to_the_first_group_in_table_order():
    y = np.array([0, 1, 0, 1])
    pred = np.array([0, 0, 0, 0])
    t = subgroup_table(y, pred, np.array(["m", "m", "f", "f"]), "sex", num_classes=2, min_count=0)
    assert [r["group"] for r in t["groups"]] == ["f", "m"]
    assert (t["worst"], t["best"], t["gap"]) == ("f", "f", 0.0)


def test_missing_values_form_one_unknown_group_listed_last():
    labels = group_labels(np.array(["b", None, "a", np.nan, "", "  ", "NaN", 3], dtype=object))
    assert labels.tolist() == ["b", "unknown", "a", "unknown", "unknown", "unknown", "unknown", "3"]
    y = np.zeros(8, dtype=int)
    t = subgroup_table(y, y, np.array(["b", None, "a", np.nan, "", "  ", "NaN", 3], dtype=object), "site", num_classes=2, min_count=0)
    assert [(r["group"], r["n"]) for r in t["groups"]] == [("3", 1), ("a", 1), ("b", 1), ("unknown", 5)]
    t = subgroup_table(y[:4], y[:4], ["10", "9", "<9", "x"], "n", num_classes=2, min_count=0)
    assert [r["group"] for r in t["groups"]] == ["<9", "9", "10", "x"]  # numbers by value, then names


def test_a_single_group_is_a_one_line_error_naming_the_key():
    y, pred, _ = hand_case()
    with pytest.raises(ConfigError) as e:
        subgroup_table(y, pred, np.array(["male"] * 8), "sex", num_classes=3)
    assert str(e.value) == ("column 'sex' has one value ('male') on test; a subgroup table needs at least two groups: "
                            "remove it from eval.subgroups")
    with pytest.raises(ConfigError, match=r"one value \('unknown'\) on val"):
        subgroup_table(y, pred, [None] * 8, "sex", num_classes=3, split="val")


@pytest.mark.parametrize("kwargs, error, text", [
    ({"groups": np.array(["a", "b"] * 3)}, DataError, "column 'sex' has 6 values but test has 8 images"),
    ({"positive": [3]}, ConfigError, "eval.positive"),
    ({"positive": []}, ConfigError, "eval.positive"),
    ({"min_count": -1}, ConfigError, "eval.subgroup_min_count"),
    ({"y_true": np.array([0, 0, 1, 1, 2, 0, 1, -1])}, DataError, "unlabelled"),
    ({"y_pred": np.array([0, 1, 1, 1, 0, 0, 0])}, DataError, "8 targets but 7 predictions"),
    ({"y_pred": np.array([0, 1, 1, 1, 0, 0, 0, 5])}, DataError, "prediction 5 is outside 0..2"),
])
def test_bad_inputs_are_one_line_errors(kwargs, error, text):
    y, pred, groups = hand_case()
    args = {"y_true": y, "y_pred": pred, "groups": groups, "column": "sex", "num_classes": 3, **kwargs}
    with pytest.raises(error) as e:
        subgroup_table(**args)
    assert text in str(e.value) and "\n" not in str(e.value)
    assert isinstance(e.value, LongtailError)


def test_age_bands_default_edges_and_unknowns():
    ages = [10, 29.9, 30, 44, 44.5, 45, 59, 60, 74, 75, 85, 199, 200, -5, None, np.nan, "", "unknown", "50", "sixty", float("inf")]
    assert age_bands(np.array(ages, dtype=object)).tolist() == [
        "<30", "<30", "30-44", "30-44", "30-44", "45-59", "45-59", "60-74", "60-74", "75+", "75+", "75+",
        "unknown", "unknown", "unknown", "unknown", "unknown", "unknown", "45-59", "unknown", "unknown"]
    assert age_bands(np.array([0.0, 49, 50, 119])).tolist() == ["<30", "45-59", "45-59", "75+"]


def test_age_bands_custom_edges_and_bad_edges():
    assert age_bands([10, 50, 130], edges=(0, 50, 120)).tolist() == ["<50", "50+", "unknown"]
    assert age_bands([10, 50], edges=(0, 120)).tolist() == ["0-119", "0-119"]
    for bad in ((0,), (0, 30, 30), (0, 30.5, 60), (60, 30), ("a", "b")):
        with pytest.raises(ConfigError, match="increasing whole numbers"):
            age_bands([10], edges=bad)


def test_age_bands_feed_a_subgroup_table():
    rng = np.random.default_rng(1)
    ages = rng.choice([15, 35, 50, 65, 80, np.nan], size=200)
    y = rng.integers(0, 3, 200)
    t = subgroup_table(y, y, age_bands(ages), "age", num_classes=3, min_count=1)
    assert [r["group"] for r in t["groups"]] == ["<30", "30-44", "45-59", "60-74", "75+", "unknown"]
    assert all(r["balanced_accuracy"] == 1.0 for r in t["groups"]) and t["gap"] == 0.0
