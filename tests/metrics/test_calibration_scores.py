"""Calibration scores: ECE and adaptive ECE against netcal, Brier and NLL against scikit-learn, and by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, log_loss

from longtail.core.errors import LongtailError
from longtail.metrics.calibration import reliability
from longtail.metrics.calibration_scores import adaptive_ece, brier_score, calibration_scores, nll


def synthetic(seed: int, n: int = 600, c: int = 5, scale: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Over-confident probabilities: labels drawn from softmax(z), probabilities softmax(scale * z)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, c))
    p_true = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = np.array([rng.choice(c, p=row) for row in p_true])
    e = np.exp(scale * z)
    return e / e.sum(1, keepdims=True), y


def two_class(conf: list[float], correct: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Binary probabilities with the given top-1 confidences (class 0 predicted) and correctness."""
    c = np.array(conf)
    return np.stack([c, 1 - c], axis=1), np.where(np.array(correct) == 1, 0, 1)


@pytest.mark.parametrize("seed,bins", [(0, 15), (1, 10), (2, 7)])
def test_ece_and_adaptive_ece_match_netcal(seed, bins):
    netcal_metrics = pytest.importorskip("netcal.metrics")
    p, y = synthetic(seed)
    scores = calibration_scores(p, y, bins=bins)
    assert scores["ece"] == pytest.approx(netcal_metrics.ECE(bins).measure(p, y), abs=1e-12)
    assert scores["adaptive_ece"] == pytest.approx(netcal_metrics.ECE(bins, equal_intervals=False).measure(p, y), abs=1e-12)
    assert scores["ece"] == reliability(p, y, bins)["ece"]  # the reliability diagram's number, reused


def equal_mass_ece_loop(conf: np.ndarray, correct: np.ndarray, bins: int) -> float:
    """The definition item by item: bin b is [e_b, e_(b+1)) (the last closed), e_b the b / bins quantile."""
    edges = np.quantile(conf, np.linspace(0, 1, bins + 1))
    edges[0], edges[-1] = 0.0, 1.0
    total = 0.0
    for b in range(bins):
        inside = [i for i, c in enumerate(conf) if edges[b] <= c < edges[b + 1] or (b == bins - 1 and c == 1.0)]
        if inside:
            total += len(inside) * abs(np.mean(correct[inside]) - np.mean(conf[inside]))
    return total / len(conf)


def test_adaptive_ece_with_tied_confidences_matches_the_definition():
    # netcal cannot serve here: with tied quantile edges its histogram raises "smallest edge difference is numerically 0"
    p, y = synthetic(3, n=400)
    conf = np.round(p.max(1), 1)
    rows = np.zeros_like(p)
    rows[:, 0] = conf
    rows[:, 1:] = ((1 - conf) / (p.shape[1] - 1))[:, None]
    keep = conf > 1 / p.shape[1] + 1e-9  # column 0 must stay the top-1 class
    rows, y = rows[keep], y[keep]
    assert len(np.unique(np.quantile(rows[:, 0], np.linspace(0, 1, 11)))) < 11  # some edges really coincide
    assert adaptive_ece(rows, y, 10) == pytest.approx(equal_mass_ece_loop(rows[:, 0], (y == 0).astype(float), 10), abs=1e-12)
    p, y = synthetic(7)
    assert adaptive_ece(p, y, 15) == pytest.approx(equal_mass_ece_loop(p.max(1), (p.argmax(1) == y).astype(float), 15), abs=1e-12)


def test_adaptive_ece_by_hand():
    # 6 items, 3 equal-mass bins: edges at the 1/3 and 2/3 quantiles (0.6667, 0.8333) -> {0.5, 0.6} {0.7, 0.8} {0.9, 0.95}
    p, y = two_class([0.5, 0.6, 0.7, 0.8, 0.9, 0.95], [1, 0, 1, 1, 0, 1])
    # |acc - conf| * size: 2 * |0.5 - 0.55| + 2 * |1 - 0.75| + 2 * |0.5 - 0.925|
    assert adaptive_ece(p, y, 3) == pytest.approx((0.1 + 0.5 + 0.85) / 6)
    # every confidence tied: one bin holds everything, whatever the number of bins
    p, y = two_class([0.7] * 4, [1, 1, 0, 1])
    assert adaptive_ece(p, y, 15) == pytest.approx(abs(0.75 - 0.7))


def test_brier_against_sklearn_and_by_hand():
    p, y = synthetic(4, c=4)
    assert brier_score(p, y) == pytest.approx(brier_score_loss(y, p, labels=range(4), scale_by_half=False), abs=1e-12)
    p2, y2 = synthetic(5, c=2)
    # binary: sklearn scores only the positive column, (p1 - y)^2, half of the two-column sum
    assert brier_score(p2, y2) == pytest.approx(2 * brier_score_loss(y2, p2[:, 1]), abs=1e-12)
    # by hand: p = (0.8, 0.2), y = 0 -> 0.2^2 + 0.2^2; p = (0.1, 0.3, 0.6), y = 1 -> 0.01 + 0.49 + 0.36
    assert brier_score(np.array([[0.8, 0.2, 0.0], [0.1, 0.3, 0.6]]), np.array([0, 1])) == pytest.approx((0.08 + 0.86) / 2)


def test_nll_against_sklearn_and_clipping():
    p, y = synthetic(6, c=6)
    assert nll(p, y) == pytest.approx(log_loss(y, p, labels=range(6)), abs=1e-12)
    # a class absent from the targets changes nothing
    absent = y != 5
    assert nll(p[absent], y[absent]) == pytest.approx(log_loss(y[absent], p[absent], labels=range(6)), abs=1e-12)
    # p_y = 0 is clipped at 1e-12, not inf
    assert nll(np.array([[1.0, 0.0], [0.5, 0.5]]), np.array([1, 0])) == pytest.approx((-np.log(1e-12) - np.log(0.5)) / 2)


def test_scores_of_a_single_present_class_and_perfect_predictions():
    p = np.array([[1.0, 0.0, 0.0]] * 3)
    y = np.zeros(3, dtype=int)
    assert calibration_scores(p, y) == {"ece": 0.0, "adaptive_ece": 0.0, "brier": 0.0, "nll": pytest.approx(0.0, abs=1e-15)}


@pytest.mark.parametrize("probs,targets,bins,match", [
    (np.array([[2.0, -1.0], [0.5, 0.3]]), np.array([0, 1]), 15, "pass softmax"),  # logits, not probabilities
    (np.array([[np.nan, 1.0]]), np.array([0]), 15, "NaN or inf"),
    (np.array([[0.5, 0.5]]), np.array([2]), 15, "outside 0..1"),
    (np.zeros((0, 3)), np.zeros(0, dtype=int), 15, "empty"),
    (np.array([[0.5, 0.5]]), np.array([0]), 0, "positive integer"),
])
def test_one_line_errors(probs, targets, bins, match):
    with pytest.raises(LongtailError, match=match) as err:
        calibration_scores(probs, targets, bins=bins)
    assert "\n" not in str(err.value)
