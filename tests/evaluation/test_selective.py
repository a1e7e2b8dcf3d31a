"""Selective prediction: risk-coverage curves and AURC by hand and against direct computations, thresholds on validation."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from longtail.core.errors import ConfigError, LongtailError
from longtail.evaluation.selective import accept, aurc, choose_threshold, confidence, risk_coverage, selective_summary

# five images, ranked by max probability 0.9 > 0.8 > 0.7 > 0.6 > 0.55 (margin ranks them the same way)
FIVE = np.array([[0.9, 0.1],    # y 0, right
                 [0.2, 0.8],    # y 0, wrong
                 [0.3, 0.7],    # y 1, right
                 [0.6, 0.4],    # y 1, wrong
                 [0.55, 0.45]])  # y 0, right
FIVE_Y = np.array([0, 0, 1, 1, 0])


def synthetic(seed: int, n: int = 500, c: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.choice(c, size=n, p=np.linspace(2, 0.2, c) / np.linspace(2, 0.2, c).sum())
    z = rng.normal(size=(n, c)) * 1.5
    z[np.arange(n), y] += rng.normal(1.0, 1.0, size=n)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True), y


def test_curve_of_five_images_by_hand():
    curve = risk_coverage(FIVE, FIVE_Y)
    np.testing.assert_allclose(curve["coverage"], [0.2, 0.4, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(curve["confidence"], [0.9, 0.8, 0.7, 0.6, 0.55])
    # right, wrong, right, wrong, right -> accuracy 1, 1/2, 2/3, 1/2, 3/5
    np.testing.assert_allclose(curve["error"], [0, 1 / 2, 1 / 3, 1 / 2, 2 / 5])
    # balanced: k=1 {0: 1/1}; k=2 {0: 1/2}; k=3 {0: 1/2, 1: 1/1}; k=4 {0: 1/2, 1: 1/2}; k=5 {0: 2/3, 1: 1/2}
    np.testing.assert_allclose(curve["balanced_accuracy"], [1, 1 / 2, 3 / 4, 1 / 2, 7 / 12])
    np.testing.assert_allclose(curve["risk"], [0, 1 / 2, 1 / 4, 1 / 2, 5 / 12])
    assert aurc(curve) == pytest.approx((0 + 1 / 2 + 1 / 3 + 1 / 2 + 2 / 5) / 5)
    assert aurc(curve, risk="balanced") == pytest.approx((0 + 1 / 2 + 1 / 4 + 1 / 2 + 5 / 12) / 5)
    margin = risk_coverage(FIVE, FIVE_Y, "margin")
    np.testing.assert_allclose(margin["confidence"], [0.8, 0.6, 0.4, 0.2, 0.1])
    np.testing.assert_allclose(margin["error"], curve["error"])


def test_margin_is_top1_minus_top2():
    p = np.array([[0.5, 0.4, 0.1], [0.45, 0.1, 0.45], [0.3, 0.4, 0.3], [0.1, 0.2, 0.7]])
    np.testing.assert_allclose(confidence(p, "margin"), [0.1, 0.0, 0.1, 0.5])
    np.testing.assert_allclose(confidence(p, "max_prob"), [0.5, 0.45, 0.4, 0.7])
    # max_prob ranks the 4th first, then 1st, 2nd, 3rd; margin: 4th, then the tie 1st / 3rd in image order, then 2nd
    y = np.array([0, 1, 1, 2])
    np.testing.assert_allclose(risk_coverage(p, y, "margin")["confidence"], [0.5, 0.1, 0.1, 0.0])
    np.testing.assert_allclose(risk_coverage(p, y, "margin")["error"], [0, 0, 0, 1 / 4])


def test_ties_are_broken_by_image_order():
    p = np.array([[0.7, 0.3], [0.3, 0.7], [0.7, 0.3]])
    y = np.array([1, 1, 0])  # wrong, right, right, all at confidence 0.7
    np.testing.assert_allclose(risk_coverage(p, y)["error"], [1, 1 / 2, 1 / 3])
    np.testing.assert_allclose(risk_coverage(p[::-1], y[::-1])["error"], [0, 0, 1 / 3])


@pytest.mark.filterwarnings("ignore::UserWarning")  # sklearn, on prefixes with one class or lacking a predicted class
@pytest.mark.parametrize("seed,score", [(0, "max_prob"), (1, "margin"), (2, "max_prob")])
def test_curve_and_aurc_against_a_direct_computation(seed, score):
    p, y = synthetic(seed, n=150)
    curve = risk_coverage(p, y, score)
    conf = np.sort(p, 1)[:, -1] - (np.sort(p, 1)[:, -2] if score == "margin" else 0)
    order = np.argsort(-conf, kind="stable")
    pred = p.argmax(1)
    direct_error = np.array([np.mean(pred[order[:k]] != y[order[:k]]) for k in range(1, len(y) + 1)])
    direct_bal = np.array([balanced_accuracy_score(y[order[:k]], pred[order[:k]]) for k in range(1, len(y) + 1)])
    np.testing.assert_allclose(curve["error"], direct_error, atol=1e-12)
    np.testing.assert_allclose(curve["balanced_accuracy"], direct_bal, atol=1e-12)
    np.testing.assert_allclose(curve["accuracy"], 1 - direct_error, atol=1e-12)
    # AURC (Geifman et al. 2019) as the mean over k of (cumulative errors / k), from cumulative sums alone
    wrong = (pred != y)[order].astype(float)
    assert aurc(curve) == pytest.approx(np.mean(np.cumsum(wrong) / np.arange(1, len(y) + 1)), abs=1e-12)
    assert aurc(curve, risk="balanced") == pytest.approx(np.mean(1 - direct_bal), abs=1e-12)
    # a perfect ranking (all errors last) gives a lower AURC than this one
    best = np.sort(wrong)
    assert np.mean(np.cumsum(best) / np.arange(1, len(y) + 1)) <= aurc(curve)


def test_threshold_for_a_target_coverage():
    assert choose_threshold(FIVE, FIVE_Y, target_coverage=0.6) == pytest.approx(0.7)
    assert choose_threshold(FIVE, FIVE_Y, target_coverage=0.5) == pytest.approx(0.7)  # ceil(2.5) = 3 images
    assert choose_threshold(FIVE, FIVE_Y, target_coverage=1.0) == pytest.approx(0.55)
    np.testing.assert_array_equal(accept(FIVE, 0.7), [True, True, True, False, False])
    # with a tie at the threshold all tied images are accepted: coverage is at least the target
    p = np.array([[0.9, 0.1], [0.7, 0.3], [0.7, 0.3], [0.6, 0.4]])
    t = choose_threshold(p, np.zeros(4, dtype=int), target_coverage=0.5)
    assert t == pytest.approx(0.7) and accept(p, t).mean() == 0.75


def test_threshold_for_a_target_risk(caplog):
    with caplog.at_level(logging.WARNING, logger="longtail"):
        # balanced errors 0, 1/2, 1/4, 1/2, 5/12: <= 0.25 at k = 1 and 3 -> the larger coverage, k = 3
        assert choose_threshold(FIVE, FIVE_Y, target_risk=0.25) == pytest.approx(0.7)
        assert choose_threshold(FIVE, FIVE_Y, target_risk=0.0) == pytest.approx(0.9)
        assert choose_threshold(FIVE, FIVE_Y, target_risk=0.5) == pytest.approx(0.55)
    assert "only by accepting 3 images" in caplog.records[0].getMessage()
    # a tie makes k = 1 unreachable: images 0 and 1 share 0.9, image 1 is wrong
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.8, 0.2]])
    y = np.array([0, 1, 1])
    with pytest.raises(ConfigError, match=r"eval\.selective\.target_risk 0 cannot be met on validation: the lowest balanced error at any threshold is 0\.5 ") as err:
        choose_threshold(p, y, target_risk=0.0)
    assert "\n" not in str(err.value)


def test_a_large_validation_split_meets_a_risk_without_a_warning(caplog):
    p, y = synthetic(3, n=2000)
    curve = risk_coverage(p, y)
    target = float(curve["risk"][len(y) // 2])
    with caplog.at_level(logging.WARNING, logger="longtail"):
        t = choose_threshold(p, y, target_risk=target)
    assert not caplog.records
    accepted = accept(p, t)
    assert 1 - balanced_accuracy_score(y[accepted], p.argmax(1)[accepted]) <= target + 1e-12
    assert accepted.mean() >= 0.5


def test_selective_summary_on_test():
    s = selective_summary(FIVE, FIVE_Y, 0.7)
    # accepted: images 0, 1 (class 0) and 2 (class 1) of 3 class-0 and 2 class-1 images
    assert s == {"threshold": 0.7, "coverage": 0.6, "accepted": 3, "abstained": 2,
                 "accuracy": pytest.approx(2 / 3), "balanced_accuracy": pytest.approx(3 / 4),
                 "per_class_coverage": [pytest.approx(2 / 3), 0.5]}
    three = np.column_stack([FIVE * 0.9, np.full(5, 0.1)])  # a third class no test image has
    assert selective_summary(three, FIVE_Y, 0.6)["per_class_coverage"] == [pytest.approx(2 / 3), 0.5, None]
    none = selective_summary(FIVE, FIVE_Y, 0.95)
    assert none["accepted"] == 0 and none["abstained"] == 5 and none["accuracy"] is None and none["balanced_accuracy"] is None
    p, y = synthetic(4)
    t = choose_threshold(p[:250], y[:250], "margin", target_coverage=0.7)
    s = selective_summary(p[250:], y[250:], t, "margin")
    keep = accept(p[250:], t, "margin")
    assert s["coverage"] == keep.mean()
    assert s["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y[250:][keep], p[250:].argmax(1)[keep]))


@pytest.mark.parametrize("kwargs,match", [
    ({}, "exactly one of eval.selective.target_coverage or eval.selective.target_risk"),
    ({"target_coverage": 0.5, "target_risk": 0.1}, "exactly one of"),
    ({"target_coverage": 0.0}, r"eval\.selective\.target_coverage must be in \(0, 1\]"),
    ({"target_coverage": 1.2}, r"eval\.selective\.target_coverage must be in"),
    ({"target_risk": -0.1}, r"eval\.selective\.target_risk must be in \[0, 1\]"),
    ({"target_risk": float("nan")}, r"eval\.selective\.target_risk must be in"),
    ({"score": "entropy", "target_risk": 0.1}, "eval.selective.score"),
])
def test_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match) as err:
        choose_threshold(FIVE, FIVE_Y, **kwargs)
    assert "\n" not in str(err.value)


def test_other_errors():
    with pytest.raises(LongtailError, match="aurc risk"):
        aurc(risk_coverage(FIVE, FIVE_Y), risk="f1")
    with pytest.raises(LongtailError, match="finite number"):
        accept(FIVE, float("nan"))
    with pytest.raises(LongtailError, match="pass softmax"):
        risk_coverage(np.log(FIVE), FIVE_Y)
