"""Post-hoc prior corrections: logit adjustment, tau-norm, tau selection on validation, posthoc.json."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from longtail import metrics as M
from longtail.core.errors import ConfigError, LongtailError
from longtail.evaluation import posthoc as P
from longtail.models.heads import tau_normalize_weight

COUNTS = np.array([400, 100, 25, 5])


def biased_split(rng: np.random.Generator, n: int, signal: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Balanced labels, logits = class signal + the log training prior (a head-biased model)."""
    y = rng.integers(0, len(COUNTS), n)
    z = rng.normal(size=(n, len(COUNTS)))
    z[np.arange(n), y] += signal
    return z + np.log(COUNTS / COUNTS.sum()), y


def test_logit_adjust_is_identity_for_tau_zero_and_for_uniform_counts() -> None:
    z = np.random.default_rng(0).normal(size=(6, 4))
    np.testing.assert_allclose(P.logit_adjust(z, COUNTS, 0.0), z)
    np.testing.assert_allclose(P.logit_adjust(z, [7, 7, 7, 7], 1.3), z)


def test_logit_adjust_subtracts_tau_log_prior() -> None:
    z = np.random.default_rng(1).normal(size=(5, 4))
    tau = 0.7
    out = P.logit_adjust(z, COUNTS, tau)
    prior = COUNTS / COUNTS.sum()
    # equal to z - tau * log(prior) up to a per-row constant, so identical probabilities
    np.testing.assert_allclose(out - (z - tau * np.log(prior)), np.full_like(z, -tau * np.log(4)))
    np.testing.assert_allclose(M.softmax(out.copy()), M.softmax(z - tau * np.log(prior)))


def test_logit_adjust_torch_keeps_type_device_and_dtype() -> None:
    z = torch.randn(3, 4, dtype=torch.float32)
    out = P.logit_adjust(z, COUNTS, 1.0)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), P.logit_adjust(z.numpy().astype(np.float64), COUNTS, 1.0), atol=1e-6)


def test_logit_adjust_rejects_empty_class_and_wrong_width() -> None:
    with pytest.raises(LongtailError, match="class 2 has no training images"):
        P.logit_adjust(np.zeros((2, 3)), [5, 3, 0], 1.0)
    with pytest.raises(LongtailError, match="4 classes but train_counts has 3"):
        P.logit_adjust(np.zeros((2, 4)), [5, 3, 1], 1.0)


def test_tau_norm_with_tau_zero_is_the_plain_head() -> None:
    rng = np.random.default_rng(2)
    feats, w, b = rng.normal(size=(7, 5)), rng.normal(size=(4, 5)), rng.normal(size=4)
    np.testing.assert_allclose(P.tau_norm_logits(feats, w, b, 0.0), feats @ w.T + b)
    np.testing.assert_allclose(P.tau_norm_logits(feats, w, None, 0.0), feats @ w.T)


def test_tau_norm_with_tau_one_uses_unit_class_weights() -> None:
    rng = np.random.default_rng(3)
    feats, w = rng.normal(size=(7, 5)), rng.normal(size=(4, 5)) * np.array([[10.0], [1.0], [0.5], [0.1]])
    unit = w / np.linalg.norm(w, axis=1, keepdims=True)
    np.testing.assert_allclose(P.tau_norm_logits(feats, w, None, 1.0), feats @ unit.T)
    half = tau_normalize_weight(w, 0.5)
    np.testing.assert_allclose(np.linalg.norm(half, axis=1), np.sqrt(np.linalg.norm(w, axis=1)))
    t = P.tau_norm_logits(torch.tensor(feats), torch.tensor(w), torch.zeros(4, dtype=torch.float64), 1.0)
    np.testing.assert_allclose(t.numpy(), feats @ unit.T)


def test_select_tau_returns_the_argmax_of_the_grid_on_validation() -> None:
    val_z, val_y = biased_split(np.random.default_rng(4), 800)
    grid = [1.5, 0.0, 0.5, 1.0, 2.0]
    best, scores = P.select_tau(grid, lambda t: P.logit_adjust(val_z, COUNTS, t), val_y)
    assert list(scores) == sorted(grid)
    for tau in grid:
        assert scores[tau] == pytest.approx(M.compute(P.logit_adjust(val_z, COUNTS, tau), val_y)["balanced_accuracy"])
    assert scores[best] == max(scores.values())
    assert best > 0  # the head-biased model needs a correction
    assert scores[best] > scores[0.0]


def test_select_tau_breaks_ties_towards_the_smallest_tau() -> None:
    z, y = biased_split(np.random.default_rng(5), 50)
    best, scores = P.select_tau([2.0, 1.0, 0.3], lambda t: z, y)
    assert best == 0.3 and len(set(scores.values())) == 1


def test_select_tau_other_metrics_and_errors() -> None:
    z, y = biased_split(np.random.default_rng(6), 300)
    best, scores = P.select_tau([0.0, 1.0], lambda t: P.logit_adjust(z, COUNTS, t), y, metric="gmean")
    assert scores[1.0] == pytest.approx(M.compute(P.logit_adjust(z, COUNTS, 1.0), y)["gmean"])
    y_absent = np.where(y == 3, 0, y)  # class 3 absent: fast path and full compute agree
    for metric in ("accuracy", "balanced_accuracy", "macro_recall", "macro_f1"):
        assert P.score(z, y_absent, metric) == pytest.approx(M.compute(z, y_absent)[metric]), metric
    best_ece, ece = P.select_tau([0.0, 1.0, 3.0], lambda t: P.logit_adjust(z, COUNTS, t), y, metric="ece")
    assert ece[best_ece] == min(ece.values())  # lower is better for ECE
    with pytest.raises(ConfigError, match="did you mean 'macro_f1'"):
        P.select_tau([0.0], lambda t: z, y, metric="macro_f")
    with pytest.raises(ConfigError, match="grid is empty"):
        P.select_tau([], lambda t: z, y)


def test_fit_apply_and_posthoc_json_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(7)
    w = rng.normal(size=(4, 6)) * np.array([[3.0], [1.0], [0.5], [0.2]])
    b = np.zeros(4)
    val_f, test_f = rng.normal(size=(200, 6)), rng.normal(size=(50, 6))
    val_y = (val_f @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T).argmax(1)
    val_z = val_f @ w.T + b
    chosen = P.fit_posthoc(val_z, val_y, COUNTS, logit_adjustment=True, tau_norm=True, grid=[0.0, 0.5, 1.0],
                           val_features=val_f, head_weight=w, head_bias=b)
    assert set(chosen) == {"tau_norm", "logit_adjust"}
    assert chosen["tau_norm"]["tau"] == 1.0  # labels were made by unit-norm weights
    assert chosen["tau_norm"]["grid"] == [0.0, 0.5, 1.0]
    P.save_posthoc(tmp_path, chosen)
    loaded = P.load_posthoc(tmp_path)
    assert loaded == chosen
    test_z = test_f @ w.T + b
    out = P.apply_posthoc(test_z, test_f, loaded, w, b, COUNTS)
    manual = P.logit_adjust(P.tau_norm_logits(test_f, w, b, 1.0), COUNTS, loaded["logit_adjust"]["tau"])
    np.testing.assert_allclose(out, manual)
    assert P.apply_posthoc(test_z, None, {}, None, None, None) is test_z
    assert P.load_posthoc(tmp_path / "missing") == {}


def test_apply_posthoc_says_what_is_missing(tmp_path) -> None:
    z = np.zeros((2, 4))
    with pytest.raises(LongtailError, match="features and the head weight"):
        P.apply_posthoc(z, None, {"tau_norm": {"tau": 1.0}})
    with pytest.raises(LongtailError, match="training class counts"):
        P.apply_posthoc(z, None, {"logit_adjust": {"tau": 1.0}})
    with pytest.raises(LongtailError, match="unknown entries"):
        P.apply_posthoc(z, None, {"temperature": {"tau": 1.0}})
    (tmp_path / "posthoc.json").write_text("{broken")
    with pytest.raises(LongtailError, match="not valid JSON"):
        P.load_posthoc(tmp_path)


def test_balanced_prior_metrics_reports_both_views() -> None:
    z, y = biased_split(np.random.default_rng(8), 600)
    out = P.balanced_prior_metrics(z, y, COUNTS, tau=1.0)
    assert out["as_is"] == M.compute(z, y, train_counts=COUNTS)
    assert out["balanced_prior"] == M.compute(P.logit_adjust(z, COUNTS, 1.0), y, train_counts=COUNTS)
    # on balanced labels the prior correction must help the tail and the balanced accuracy
    assert out["balanced_prior"]["balanced_accuracy"] > out["as_is"]["balanced_accuracy"]
    assert out["balanced_prior"]["shots"]["few"]["accuracy"] > out["as_is"]["shots"]["few"]["accuracy"]
