"""Split conformal sets: against MAPIE 1.6 (marginal, and per class for Mondrian), by hand, and their coverage on 20 seeds."""

from __future__ import annotations

import json
import logging
import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin

from longtail.core.errors import ConfigError, DataError, LongtailError
from longtail.evaluation.conformal import (
    ConformalFit,
    conformal_quantile,
    coverage_report,
    fit_conformal,
    min_calibration_count,
    prediction_sets,
)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def exchangeable(seed: int, n: int, c: int = 4, prior: tuple[float, ...] = (0.5, 0.3, 0.15, 0.05)) -> tuple[np.ndarray, np.ndarray]:
    """i.i.d. images of a long-tailed prior; the model's probabilities are informative but over-confident."""
    rng = np.random.default_rng(seed)
    y = rng.choice(c, size=n, p=np.array(prior[:c]) / sum(prior[:c]))
    z = rng.normal(size=(n, c))
    z[np.arange(n), y] += 1.5
    return softmax(2.5 * z), y


def rows_with_true_prob(p_true: list[float], c: int = 3) -> np.ndarray:
    """Class-0 images whose true-class probability is given (the rest split evenly): score = 1 - p_true."""
    p = np.array(p_true)
    return np.column_stack([p] + [(1 - p) / (c - 1)] * (c - 1))


# ---------------------------------------------------------------------------------- by hand
def test_threshold_is_the_kth_smallest_score_by_hand():
    # n = 10 scores 0.05, 0.10, ..., 0.50; alpha = 0.2: k = ceil(11 * 0.8) = ceil(8.8) = 9 -> q = the 9th smallest = 0.45
    probs = rows_with_true_prob([1 - 0.05 * i for i in range(1, 11)])
    fit = fit_conformal(probs, np.zeros(10, dtype=int), alpha=0.2)
    assert fit.thresholds == pytest.approx(0.45)
    scores = 0.05 * np.arange(1, 11)
    # numpy's "higher" on its default linear positions would take the 10th (0.50): one order statistic too many;
    # "lower" (MAPIE's) is the 9th
    assert np.quantile(scores, 9 / 10, method="higher") == pytest.approx(0.50)
    assert np.quantile(scores, 9 / 10, method="lower") == pytest.approx(0.45)
    test = np.array([[0.55, 0.30, 0.15],   # 1 - p = 0.45, 0.70, 0.85 -> {0}
                     [0.54, 0.40, 0.06],   # 0.46 > 0.45 -> empty
                     [0.60, 0.39, 0.01]])  # {0}: 0.40; class 1: 0.61 > 0.45
    np.testing.assert_array_equal(prediction_sets(test, fit), [[True, False, False], [False, False, False], [True, False, False]])
    # alpha = 0.5: k = ceil(5.5) = 6 -> 0.30
    assert fit_conformal(probs, np.zeros(10, dtype=int), alpha=0.5).thresholds == pytest.approx(0.30)


def test_tied_scores_and_the_float_rounding_of_the_rank():
    # all scores 0.3: q = 0.3 and a test image with exactly that score is admitted
    fit = fit_conformal(rows_with_true_prob([0.7] * 20), np.zeros(20, dtype=int), alpha=0.1)
    assert fit.thresholds == pytest.approx(0.3)
    assert prediction_sets(rows_with_true_prob([0.7]), fit)[0, 0]
    # (n + 1)(1 - alpha) that is an integer in exact arithmetic: n = 9, alpha = 0.1 -> k = 9 = n (finite, the largest)
    assert conformal_quantile(np.arange(1, 10) / 10, 0.1) == pytest.approx(0.9)
    assert conformal_quantile(np.arange(1, 9) / 10, 0.1) == 1.0  # n = 8 < 9: no finite order statistic


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.1, 0.2, 0.25, 0.3, 1 / 3, 0.5, 0.9])
def test_min_calibration_count_is_the_smallest_n_with_a_finite_threshold(alpha):
    a = Fraction(str(alpha)) if alpha != 1 / 3 else Fraction(1, 3)
    exact = next(n for n in range(1, 1000) if math.ceil((n + 1) * (1 - a)) <= n)
    assert min_calibration_count(alpha) == exact == max(1, math.ceil(1 / a) - 1)


# ---------------------------------------------------------------------------------- against MAPIE
class StoredProbabilities(ClassifierMixin, BaseEstimator):
    """A 'fitted' sklearn classifier whose predict_proba returns precomputed rows, looked up by the index in X[:, 0]."""

    def __init__(self, probs: np.ndarray | None = None):
        self.probs = probs
        if probs is not None:
            self.classes_ = np.arange(probs.shape[1])  # what MAPIE's prefit check looks for

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> StoredProbabilities:
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.probs[np.asarray(X)[:, 0].astype(int)]

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_proba(X).argmax(1)


def mapie_sets(probs: np.ndarray, y: np.ndarray, cal: np.ndarray, test: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    mapie_classification = pytest.importorskip("mapie.classification")
    m = mapie_classification.SplitConformalClassifier(estimator=StoredProbabilities(probs), confidence_level=1 - alpha, conformity_score="lac", prefit=True)
    X = np.arange(len(probs))[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "your conformalization dataset has less labels" on per-class calibration
        m.conformalize(X[cal], y[cal])
        _, sets = m.predict_set(X[test])
    return sets[:, :, 0], float(m._mapie_classifier.conformity_score_function_.quantiles_[0])


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.2, 0.3])
def test_marginal_sets_are_mapies(alpha):
    probs, y = exchangeable(0, 1500, c=5, prior=(0.4, 0.25, 0.15, 0.12, 0.08))
    cal, test = np.arange(500), np.arange(500, 1500)
    ref, q_ref = mapie_sets(probs, y, cal, test, alpha)
    fit = fit_conformal(probs[cal], y[cal], alpha)
    assert fit.thresholds == q_ref
    np.testing.assert_array_equal(prediction_sets(probs[test], fit), ref)


def test_where_float_rounding_moves_mapie_one_order_statistic_up():
    # alpha = 1/3, n = 500: (n + 1)(1 - alpha) = 334 exactly, but 501 * (1 - 1/3) = 334.00000000000006 in floats, so
    # MAPIE takes the 335th score; longtail takes the 334th, which already gives P >= 334 / 501 = 2/3 (for decimal
    # alphas such as 0.05, 0.1, 0.2 the two agree for every n < 2000)
    probs, y = exchangeable(0, 1500, c=5, prior=(0.4, 0.25, 0.15, 0.12, 0.08))
    cal, test = np.arange(500), np.arange(500, 1500)
    _, q_ref = mapie_sets(probs, y, cal, test, 1 / 3)
    scores = np.sort(1 - probs[cal, y[cal]])
    assert q_ref == scores[334] and fit_conformal(probs[cal], y[cal], 1 / 3).thresholds == scores[333]


def test_class_conditional_is_the_marginal_routine_per_class_and_mapies_per_class():
    # MAPIE 1.6 has no Mondrian classifier: the reference is MAPIE calibrated on each class's images alone
    probs, y = exchangeable(1, 3000)
    cal, test = np.arange(1200), np.arange(1200, 3000)
    fit = fit_conformal(probs[cal], y[cal], 0.1, "class_conditional")
    sets = prediction_sets(probs[test], fit)
    for c in range(4):
        own = fit_conformal(probs[cal][y[cal] == c], y[cal][y[cal] == c], 0.1, "marginal")
        assert fit.thresholds[c] == own.thresholds
        np.testing.assert_array_equal(sets[:, c], prediction_sets(probs[test], own)[:, c])
        ref, _ = mapie_sets(probs, y, cal[y[cal] == c], test, 0.1)
        np.testing.assert_array_equal(sets[:, c], ref[:, c])


# ---------------------------------------------------------------------------------- small classes
def test_a_class_too_small_for_the_guarantee_is_always_in_the_set(caplog):
    probs, y = exchangeable(2, 800)
    keep = (y != 3) | (np.cumsum(y == 3) <= 4)  # class 3 ('df') keeps 4 calibration images
    names = ["nv", "mel", "bcc", "df"]
    with caplog.at_level(logging.WARNING, logger="longtail"):
        fit = fit_conformal(probs[keep], y[keep], 0.05, "class_conditional", class_names=names)
    assert [r.getMessage() for r in caplog.records] == [
        "class 'df' has 4 validation images; a 1 - 0.05 coverage guarantee needs at least 19; its sets include it always (q = 1)"]
    assert fit.thresholds[3] == 1.0 and fit.guaranteed() == (True, True, True, False)
    test, yt = exchangeable(3, 500)
    assert prediction_sets(test, fit)[:, 3].all()
    assert coverage_report(prediction_sets(test, fit), yt, names)["per_class"][3]["coverage"] == 1.0


def test_a_class_absent_from_calibration_and_a_single_class(caplog):
    probs, y = exchangeable(4, 600)
    with caplog.at_level(logging.WARNING, logger="longtail"):
        fit = fit_conformal(probs[y != 2], y[y != 2], 0.1, "class_conditional", class_names=list("abcd"))
    assert fit.counts[2] == 0 and fit.thresholds[2] == 1.0
    assert "class 'c' has 0 validation images" in caplog.records[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="longtail"):
        only = fit_conformal(probs[y == 0], y[y == 0], 0.1, "class_conditional", class_names=list("abcd"))
    assert len(caplog.records) == 3 and only.thresholds[1:] == (1.0, 1.0, 1.0) and only.thresholds[0] < 1.0
    # marginal on a split that is too small: every set is full
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="longtail"):
        tiny = fit_conformal(probs[:5], y[:5], 0.1)
    assert tiny.thresholds == 1.0 and prediction_sets(probs, tiny).all()
    assert caplog.records[0].getMessage() == "the calibration split has 5 images; a 1 - 0.1 coverage guarantee needs at least 9; every set holds every class (q = 1)"


# ---------------------------------------------------------------------------------- coverage
def test_coverage_over_20_seeds_of_exchangeable_data():
    alpha, n_cal = 0.1, 1000
    marginal, per_class = [], []
    for seed in range(20):
        probs, y = exchangeable(100 + seed, n_cal + 4000)
        cal, test = slice(0, n_cal), slice(n_cal, None)
        m = coverage_report(prediction_sets(probs[test], fit_conformal(probs[cal], y[cal], alpha)), y[test])
        cc = coverage_report(prediction_sets(probs[test], fit_conformal(probs[cal], y[cal], alpha, "class_conditional")), y[test])
        marginal.append(m["coverage"])
        per_class.append([row["coverage"] for row in cc["per_class"]])
    mean = float(np.mean(marginal))
    assert 1 - alpha - 0.01 <= mean <= 1 - alpha + 1 / (n_cal + 1) + 0.01  # valid, and not needlessly conservative
    per_class_mean = np.mean(per_class, axis=0)
    assert np.all(per_class_mean >= 1 - alpha - 0.02), per_class_mean  # the 5% class (about 50 calibration images) too


# ---------------------------------------------------------------------------------- report, storage, errors
def test_coverage_report_by_hand():
    sets = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 1]], dtype=bool)
    y = np.array([0, 1, 1, 0])
    r = coverage_report(sets, y, ["a", "b", "c"])
    assert r["n"] == 4 and r["coverage"] == 0.5 and r["mean_set_size"] == 1.25
    assert r["empty_share"] == 0.25 and r["singleton_share"] == 0.25
    assert r["per_class"] == [
        {"class": "a", "count": 2, "coverage": 0.5, "mean_set_size": 1.5},
        {"class": "b", "count": 2, "coverage": 0.5, "mean_set_size": 1.0},
        {"class": "c", "count": 0, "coverage": None, "mean_set_size": None},
    ]


@pytest.mark.parametrize("mode", ["marginal", "class_conditional"])
def test_fit_round_trips_through_json(mode):
    probs, y = exchangeable(5, 400)
    fit = fit_conformal(probs, y, 0.1, mode, class_names=list("abcd"))
    back = ConformalFit.from_dict(json.loads(json.dumps(fit.to_dict())))
    assert back == fit
    np.testing.assert_array_equal(prediction_sets(probs, back), prediction_sets(probs, fit))
    with pytest.raises(DataError, match="lacks thresholds"):
        ConformalFit.from_dict({k: v for k, v in fit.to_dict().items() if k != "thresholds"})


@pytest.mark.parametrize("alpha", [0, 1, -0.1, 1.5, float("nan"), True, "0.1", None])
def test_alpha_out_of_range_names_the_config_key(alpha):
    probs, y = exchangeable(6, 50)
    with pytest.raises(ConfigError, match=r"eval\.conformal\.alpha must be in \(0, 1\)") as err:
        fit_conformal(probs, y, alpha)
    assert "\n" not in str(err.value)


def test_other_input_errors():
    probs, y = exchangeable(7, 50)
    with pytest.raises(ConfigError, match="eval.conformal.mode"):
        fit_conformal(probs, y, 0.1, "per_class")
    with pytest.raises(LongtailError, match="pass softmax"):
        fit_conformal(np.log(probs), y, 0.1)
    with pytest.raises(LongtailError, match="3 class names for 4"):
        fit_conformal(probs, y, 0.1, class_names=list("abc"))
    fit = fit_conformal(probs, y, 0.1)
    with pytest.raises(DataError, match="do not match the conformal fit's 4 classes"):
        prediction_sets(probs[:, :3] / probs[:, :3].sum(1, keepdims=True), fit)
