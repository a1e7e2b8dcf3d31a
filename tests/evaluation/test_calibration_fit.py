"""Temperature scaling: against netcal's TemperatureScaling, a brute-force grid, an independent solver, and known factors."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.metrics import log_loss

from longtail.core.errors import ConfigError, DataError, LongtailError
from longtail.evaluation.calibration_fit import apply_temperature, fit_temperature, temperature_nll


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def miscalibrated(seed: int, factors: float | np.ndarray = 3.0, n: int = 3000, c: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z); the model reports z * factors (per class when factors is a vector): T = factors is the truth."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, c)) * 1.5
    y = (rng.random(n)[:, None] > np.cumsum(softmax(z), 1)).sum(1)
    return z * factors, np.minimum(y, c - 1)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pyro inside netcal
def test_scalar_matches_netcal_temperature_scaling():
    scaling = pytest.importorskip("netcal.scaling")
    for seed in (0, 1):
        logits, y = miscalibrated(seed, n=1500)
        ts = scaling.TemperatureScaling()  # fits a weight w on log-probabilities: T = 1 / w
        ts.fit(softmax(logits), y)
        t = fit_temperature(logits, y, "scalar")
        assert t.shape == ()
        assert float(t) == pytest.approx(1.0 / float(np.ravel(ts.temperature)[0]), rel=1e-3)


def grid_nll(logits: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """NLL of softmax(logits / T) for every T of the grid at once."""
    s = logits[None, :, :] / grid[:, None, None]
    m = s.max(2)
    lse = np.log(np.exp(s - m[:, :, None]).sum(2)) + m
    return np.mean(lse - s[:, np.arange(len(y)), y], axis=1)


def test_scalar_recovers_the_factor_and_beats_a_brute_force_grid():
    logits, y = miscalibrated(2, n=2000)
    t = float(fit_temperature(logits, y, "scalar"))
    assert t == pytest.approx(3.0, rel=0.08)
    coarse = np.arange(1.0, 6.0, 0.02)
    best = coarse[np.argmin(grid_nll(logits, y, coarse))]
    fine = np.arange(best - 0.02, best + 0.02, 2e-4)
    nlls = grid_nll(logits, y, fine)
    assert abs(t - fine[np.argmin(nlls)]) <= 2e-4
    assert temperature_nll(logits, y, t) <= nlls.min() + 1e-12
    assert nlls.min() == pytest.approx(log_loss(y, softmax(logits / fine[np.argmin(nlls)]), labels=range(5)), abs=1e-12)


def test_scalar_keeps_every_prediction_and_apply_divides():
    logits, y = miscalibrated(3, n=500)
    t = fit_temperature(logits, y)
    out = apply_temperature(logits, t)
    np.testing.assert_array_equal(out, logits / float(t))
    np.testing.assert_array_equal(out.argmax(1), logits.argmax(1))
    per_class = np.array([1.0, 2.0, 4.0, 0.5, 1.0])
    np.testing.assert_allclose(apply_temperature(logits, per_class), logits / per_class[None, :])
    assert temperature_nll(logits, y, 1.0) == pytest.approx(log_loss(y, softmax(logits), labels=range(5)), abs=1e-12)
    assert temperature_nll(logits, y, t) < temperature_nll(logits, y, 1.0)


def test_vector_recovers_per_class_factors_and_is_at_least_as_good_as_scalar():
    factors = np.array([1.0, 2.0, 4.0, 1.5, 3.0])
    logits, y = miscalibrated(4, factors=factors, n=6000)
    tv = fit_temperature(logits, y, "vector")
    assert tv.shape == (5,)
    np.testing.assert_allclose(tv, factors, rtol=0.15)
    ts = fit_temperature(logits, y, "scalar")
    assert temperature_nll(logits, y, tv) <= temperature_nll(logits, y, ts) + 1e-12


def test_vector_matches_an_independent_solver_in_inverse_temperature():
    # NLL is convex in b = 1 / T: a plain BFGS there (numerical gradient) must reach the same minimum
    logits, y = miscalibrated(5, factors=np.array([2.0, 1.0, 3.0, 1.0, 2.0]), n=1000)
    rows = np.arange(len(y))

    def nll_b(b):
        s = logits * b
        m = s.max(1)
        return float(np.mean(np.log(np.exp(s - m[:, None]).sum(1)) + m - s[rows, y]))

    ref = minimize(nll_b, np.ones(5), method="BFGS", options={"gtol": 1e-9})
    tv = fit_temperature(logits, y, "vector")
    assert temperature_nll(logits, y, tv) == pytest.approx(ref.fun, abs=1e-7)
    np.testing.assert_allclose(tv, 1 / ref.x, rtol=1e-3)


def test_vector_leaves_a_class_absent_from_validation_at_one(caplog):
    logits, y = miscalibrated(6, factors=np.array([2.0, 2.0, 2.0, 2.0, 2.0]), n=2000)
    keep = y != 3
    with caplog.at_level(logging.WARNING, logger="longtail"):
        tv = fit_temperature(logits[keep], y[keep], "vector", class_names=list("abcde"))
    assert tv[3] == 1.0
    assert np.all(np.abs(tv[[0, 1, 2, 4]] - 1.0) > 0.2)  # the present classes are fitted
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "class 3 ('d') has no validation images; its temperature stays 1" in messages[0]
    # scalar mode needs no warning for it
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="longtail"):
        fit_temperature(logits[keep], y[keep], "scalar")
    assert not caplog.records


def test_fit_is_deterministic_and_works_with_two_classes():
    logits, y = miscalibrated(7, n=400, c=2)
    a, b = fit_temperature(logits, y, "vector"), fit_temperature(logits.copy(), y.copy(), "vector")
    np.testing.assert_array_equal(a, b)
    assert float(fit_temperature(logits.astype(np.float32), y)) == pytest.approx(float(fit_temperature(logits, y)), rel=1e-5)


def test_a_separable_validation_split_warns(caplog):
    # every image right with a margin: the NLL falls toward 0 as T -> 0, there is no finite minimum
    logits = np.array([[5.0, 0.0], [0.0, 5.0]] * 10)
    y = np.array([0, 1] * 10)
    with caplog.at_level(logging.WARNING, logger="longtail"):
        t = fit_temperature(logits, y)
    assert float(t) < 1.0
    assert len(caplog.records) == 1 and "every validation image is classified correctly" in caplog.records[0].getMessage()


def test_uninformative_logits_hit_the_upper_bound_with_a_warning(caplog):
    # the true class always gets the lower logit: the NLL falls as T -> inf (uniform probabilities)
    logits = np.array([[0.0, 1.0], [1.0, 0.0]] * 10)
    y = np.array([0, 1] * 10)
    with caplog.at_level(logging.WARNING, logger="longtail"):
        t = fit_temperature(logits, y)
    assert float(t) == pytest.approx(100.0)
    assert "reached its bound" in caplog.records[0].getMessage()


@pytest.mark.parametrize("logits,targets,mode,error,match", [
    (np.array([[0.0, np.inf], [1.0, 0.0]]), np.array([0, 1]), "scalar", DataError, "NaN or inf"),
    (np.array([[np.nan, 0.0], [1.0, 0.0]]), np.array([0, 1]), "vector", DataError, "NaN or inf"),
    (np.array([[1.0, 0.0], [2.0, 0.0]]), np.array([0, 0]), "scalar", DataError, "at least 2 classes"),
    (np.array([[1.0, 0.0], [2.0, 0.0]]), np.array([0, 1]), "matrix", ConfigError, "posthoc.temperature"),
    (np.array([1.0, 0.0]), np.array([0]), "scalar", LongtailError, "N x C"),
])
def test_one_line_errors(logits, targets, mode, error, match):
    with pytest.raises(error, match=match) as err:
        fit_temperature(logits, targets, mode)
    assert "\n" not in str(err.value)


def test_bad_temperatures_are_refused():
    z = np.zeros((2, 3))
    for bad in (0.0, -1.0, np.nan, np.ones(2)):
        with pytest.raises(DataError):
            apply_temperature(z, bad)
