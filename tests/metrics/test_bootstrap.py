"""Bootstrap intervals and paired comparisons (issue #27): weighted metrics against compute() on
resampled rows, coverage on a known answer, scipy / statsmodels as references, grouped resampling."""

from __future__ import annotations


import numpy as np
import pytest
from scipy import stats

from longtail import metrics as M
from longtail.core.errors import LongtailError
from longtail.metrics import bootstrap as B
from longtail.metrics.weighted import WEIGHTED_METRICS, WeightedScorer

from .common import noisy_logits


def tied_logits(rng: np.random.Generator, y: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows copied from a few integer prototypes (plus a constant shift, which softmax removes): many exactly equal probabilities."""
    protos = rng.integers(0, 3, size=(8, num_classes)).astype(np.float64)
    protos[np.arange(8), rng.integers(0, num_classes, 8)] += 2.0
    return protos[rng.integers(0, 8, len(y))] + rng.integers(0, 3, len(y))[:, None]


def binary_logits(correct: np.ndarray, y: np.ndarray) -> np.ndarray:
    """2-class logits whose argmax is y where ``correct`` and the other class elsewhere."""
    pred = np.where(correct, y, 1 - y)
    return np.eye(2)[pred] * 2.0


def assert_matches_compute(z: np.ndarray, y: np.ndarray, draws: list[np.ndarray]) -> None:
    scorer = WeightedScorer(z, y)
    weights = np.stack([np.bincount(idx, minlength=len(y)) for idx in draws])
    got = scorer(weights)
    for b, idx in enumerate(draws):
        ref = M.compute(z[idx], y[idx])
        for m in WEIGHTED_METRICS:
            if ref.get(m) is None:
                assert np.isnan(got[m][b]), (m, b)
            else:
                assert got[m][b] == pytest.approx(ref[m], abs=1e-9, rel=0), (m, b)


# ------------------------------------------------------------------------------ weighted metrics
@pytest.mark.parametrize("num_classes,n,ties,seed", [(2, 60, False, 0), (3, 120, False, 1), (3, 120, True, 2),
                                                     (10, 300, False, 3), (10, 300, True, 4)])
def test_weighted_metrics_equal_compute_on_the_resampled_rows(num_classes, n, ties, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes - 1, n)
    y[:2] = num_classes - 1  # a rare class of two images
    z = tied_logits(rng, y, num_classes) if ties else noisy_logits(rng, y, num_classes)
    if ties:
        p = M.softmax(z.copy())
        assert len(np.unique(p[:, 0])) < n // 4 and len(np.unique(p)) < p.size // 4  # ties within a column and pooled
    draws = [rng.integers(0, n, n) for _ in range(4)]
    draws.append(rng.integers(2, n, n))  # the rare class vanishes: macro averages over the classes left
    draws.append(np.concatenate([np.zeros(5, dtype=np.int64), rng.integers(2, n, 20)]))  # a small, lopsided resample
    draws.append(np.flatnonzero(y == y[5]))  # one class only: AUCs undefined, specificity 0/0
    assert_matches_compute(z, y, draws)
    assert np.isnan(WeightedScorer(z, y)(np.ones(n))["top5_accuracy"][0]) == (num_classes <= 5)


def test_scorer_keeps_labelled_rows_and_checks_its_inputs():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 4, 50)
    y[[3, 10]] = -1
    z = noisy_logits(rng, np.maximum(y, 0), 4)
    scorer = WeightedScorer(z, y, metrics=("accuracy", "mauc"))
    assert scorer.n == 48 and scorer.index.tolist() == [i for i in range(50) if i not in (3, 10)]
    got = scorer(np.ones(48))
    ref = M.compute(z[scorer.index], y[scorer.index])
    assert set(got) == {"accuracy", "mauc"} and got["mauc"].shape == (1,) and got["mauc"][0] == pytest.approx(ref["mauc"], abs=1e-12)
    with pytest.raises(LongtailError, match=r"weights must be a B x 48 matrix"):
        scorer(np.ones((2, 50)))
    with pytest.raises(LongtailError, match="non-negative"):
        scorer(-np.ones(48))
    with pytest.raises(LongtailError, match=r"logits must be an N x C array"):
        WeightedScorer(np.ones(5), np.zeros(5, dtype=int))
    with pytest.raises(LongtailError, match=r"targets must be a vector of 50 labels"):
        WeightedScorer(z, y[:40])
    with pytest.raises(LongtailError, match=r"unknown metric 'acuracy' \(did you mean 'accuracy'\?\)"):
        WeightedScorer(z, y, metrics=("acuracy",))
    with pytest.raises(LongtailError, match="no labelled samples"):
        WeightedScorer(z, -np.ones(50, dtype=int))


# ------------------------------------------------------------------------------ intervals
def test_coverage_of_the_true_accuracy():
    """1000 test sets of 200 images with P(correct) = 0.7: the 95% intervals cover 0.7 about 95% of the time."""
    rng = np.random.default_rng(6)
    n, reps, truth = 200, 500, 0.7
    jack = B.jackknife_weights(n)
    assert jack.shape == (n, n) and (jack.sum(axis=1) == n - 1).all() and (np.diag(jack) == 0).all()
    covered = {"percentile": 0, "bca": 0}
    for _ in range(1000):
        y = rng.integers(0, 2, n)
        scorer = WeightedScorer(binary_logits(rng.random(n) < truth, y), y, metrics=("accuracy",))
        replicates = scorer(B.resample_weights(n, reps, rng))["accuracy"]
        estimate = scorer(np.ones(n))["accuracy"][0]
        jackknife = scorer(jack)["accuracy"]
        for method in covered:
            low, high = B.interval(replicates, estimate, 0.95, method, jackknife)
            covered[method] += low <= truth <= high
    assert 930 <= covered["percentile"] <= 970 and 930 <= covered["bca"] <= 970, covered


@pytest.mark.parametrize("method,scipy_method", [("percentile", "percentile"), ("bca", "BCa")])
def test_intervals_agree_with_scipy_bootstrap(method, scipy_method):
    rng = np.random.default_rng(7)
    n = 300
    y = rng.integers(0, 2, n)
    correct = rng.random(n) < 0.8
    ours = B.bootstrap_intervals(binary_logits(correct, y), y, resamples=5000, method=method, seed=1, metrics=("accuracy",))["accuracy"]
    ref = stats.bootstrap((correct.astype(float),), np.mean, n_resamples=5000, method=scipy_method, rng=np.random.default_rng(2))
    assert ours["estimate"] == correct.mean() and ours["resamples"] == 5000 and ours["undefined"] == 0 and "note" not in ours
    assert ours["low"] == pytest.approx(ref.confidence_interval.low, abs=0.01)
    assert ours["high"] == pytest.approx(ref.confidence_interval.high, abs=0.01)


def test_estimates_equal_compute_and_unlabelled_rows_are_left_out():
    rng = np.random.default_rng(8)
    y = rng.integers(0, 7, 150)
    z = noisy_logits(rng, y, 7)
    y[:5] = -1
    groups = np.repeat(np.arange(75), 2)  # one per input row: the labelled rows are taken
    out = B.bootstrap_intervals(z, y, groups=groups, resamples=50, seed=3)
    again = B.bootstrap_intervals(z, y, groups=groups[5:], resamples=50, seed=3)
    ref = M.compute(z[5:], y[5:])
    assert list(out) == list(WEIGHTED_METRICS) and out == again
    for m, entry in out.items():
        assert entry["estimate"] == ref[m] and entry["low"] <= entry["estimate"] <= entry["high"], m
    three = B.bootstrap_intervals(z[:, :3], np.minimum(y, 2), resamples=20, metrics=("top5_accuracy", "accuracy"))
    assert three["top5_accuracy"]["estimate"] is None and three["top5_accuracy"]["low"] is None and three["accuracy"]["low"] is not None


def test_undefined_replicates_are_left_out_and_counted():
    y = np.array([0] * 30 + [1])  # the one class-1 image is missing from ~37% of resamples: its AUC is then undefined
    z = noisy_logits(np.random.default_rng(9), y, 2)
    entry = B.bootstrap_intervals(z, y, resamples=400, seed=0, metrics=("macro_auc",))["macro_auc"]
    assert 100 < entry["undefined"] < 200 and entry["resamples"] + entry["undefined"] == 400


def test_bca_falls_back_to_percentile_and_says_why():
    reps = np.linspace(0.1, 0.2, 101)
    iv = B.interval(reps, 0.5, 0.9, "bca", np.linspace(0, 1, 10))
    assert iv.method == "percentile" and "every replicate is below" in iv.note
    assert tuple(iv) == pytest.approx(tuple(np.quantile(reps, [0.05, 0.95])))
    iv = B.interval(reps, 0.15, 0.9, "bca", np.full(10, 0.15))
    assert iv.method == "percentile" and "constant" in iv.note
    iv = B.interval(np.r_[reps, np.nan, np.nan], 0.15, 0.9, "bca", np.linspace(0.1, 0.2, 10) ** 2)
    assert iv.method == "bca" and iv.note is None and (iv.used, iv.undefined) == (101, 2)
    low, high = B.interval([np.nan], 0.1, 0.9, "percentile")
    assert np.isnan(low) and np.isnan(high)


# ------------------------------------------------------------------------------ groups
def test_grouped_resamples_move_whole_groups_and_widen_correlated_intervals():
    rng = np.random.default_rng(10)
    groups = np.repeat([f"lesion{i}" for i in range(60)], rng.integers(1, 9, 60))
    rng.shuffle(groups)
    n = len(groups)
    w = B.resample_weights(n, 200, rng, groups)
    assert w.shape == (200, n) and w.dtype == np.int32
    for g in np.unique(groups):
        member = w[:, groups == g]
        assert (member == member[:, :1]).all()  # every image of a group has the group's weight
    first = np.unique(groups, return_index=True)[1]
    assert (w[:, first].sum(axis=1) == 60).all()  # as many group draws as groups
    jack = B.jackknife_weights(n, groups)
    assert jack.shape == (60, n) and ((jack == 0).sum(axis=1) == np.unique(groups, return_counts=True)[1]).all()
    # a group's images are all right or all wrong: the images are not independent evidence
    group_right = dict(zip(np.unique(groups), rng.random(60) < 0.7))
    correct = np.array([group_right[g] for g in groups])
    y = rng.integers(0, 2, n)
    z = binary_logits(correct, y)
    iid = B.bootstrap_intervals(z, y, resamples=1000, metrics=("accuracy",))["accuracy"]
    grouped = B.bootstrap_intervals(z, y, groups=groups, resamples=1000, metrics=("accuracy",))["accuracy"]
    assert grouped["estimate"] == iid["estimate"]
    assert grouped["high"] - grouped["low"] > 1.5 * (iid["high"] - iid["low"])


# ------------------------------------------------------------------------------ paired
def test_paired_bootstrap_identical_better_and_the_difference():
    rng = np.random.default_rng(11)
    y = rng.integers(0, 7, 400)
    base = noisy_logits(rng, y, 7, signal=0.5)
    for method in ("percentile", "bca"):
        same = B.paired_bootstrap(base, base.copy(), y, resamples=200, method=method)
        for m, d in same.items():
            assert (d["difference"], d["low"], d["high"], d["p_value"]) == (0.0, 0.0, 0.0, 1.0), (method, m)
    better = noisy_logits(rng, y, 7, signal=2.0)
    out = B.paired_bootstrap(better, base, y, resamples=500, seed=4)
    alone_a = B.bootstrap_intervals(better, y, resamples=10)
    alone_b = B.bootstrap_intervals(base, y, resamples=10)
    for m in ("accuracy", "balanced_accuracy", "macro_f1", "mauc", "micro_auc"):
        d = out[m]
        assert d["a"] == alone_a[m]["estimate"] and d["b"] == alone_b[m]["estimate"] and d["difference"] == d["a"] - d["b"]
        assert 0 < d["low"] <= d["difference"] <= d["high"] and d["p_value"] == pytest.approx(2 / 501), m
    # a paired interval is narrower than the two runs' own intervals suggest
    own = B.bootstrap_intervals(better, y, resamples=500, seed=4, metrics=("accuracy",))["accuracy"]
    assert out["accuracy"]["high"] - out["accuracy"]["low"] < 1.5 * (own["high"] - own["low"])
    bca = B.paired_bootstrap(better, base, y, resamples=300, method="bca", metrics=("accuracy",))["accuracy"]
    assert bca["low"] > 0 and "note" not in bca


def test_p_value_is_the_two_sided_percentile_test():
    assert B._p_value(np.array([1.0, 2.0, -1.0, 3.0])) == pytest.approx(2 * 2 / 5)
    assert B._p_value(np.array([1.0, 2.0, 3.0])) == pytest.approx(2 * 1 / 4)
    assert B._p_value(np.array([0.0, 0.0])) == 1.0 and B._p_value(np.array([np.nan])) is None


def test_seed_paired_bootstrap():
    rng = np.random.default_rng(12)
    y = rng.integers(0, 4, 300)
    a1, b1 = noisy_logits(rng, y, 4, 1.0), noisy_logits(rng, y, 4, 0.8)
    one = B.seed_paired_bootstrap([a1], [b1], y, resamples=300, confidence=0.9, seed=5, metrics=("accuracy", "macro_auc"))
    paired = B.paired_bootstrap(a1, b1, y, resamples=300, confidence=0.9, seed=5, metrics=("accuracy", "macro_auc"))
    for m in one:
        assert one[m]["seeds"] == 1
        assert [one[m][k] for k in ("difference", "low", "high", "p_value")] == [paired[m][k] for k in ("difference", "low", "high", "p_value")]
    good = [noisy_logits(rng, y, 4, 3.0) for _ in range(3)]
    weak = [noisy_logits(rng, y, 4, 0.3) for _ in range(3)]
    win = B.seed_paired_bootstrap(good, weak, y, resamples=300, metrics=("balanced_accuracy",))["balanced_accuracy"]
    assert win["excludes_zero"] and win["low"] > 0.2 and win["seeds"] == 3 and win["p_value"] < 0.01
    # the seed differences straddle zero: A's seed s is B's seed s + 1, so they cancel on average
    noise = [noisy_logits(rng, y, 4, 1.0) for _ in range(3)]
    mixed = B.seed_paired_bootstrap(noise, noise[1:] + noise[:1], y, resamples=300, metrics=("accuracy",))["accuracy"]
    assert mixed["difference"] == pytest.approx(0, abs=1e-12) and mixed["low"] < 0 < mixed["high"] and not mixed["excludes_zero"]
    # one test set per seed
    ys = [y, y[:200], y[100:]]
    per = B.seed_paired_bootstrap([good[0], good[1][:200], good[2][100:]], [weak[0], weak[1][:200], weak[2][100:]], ys,
                                  same_test_set=False, resamples=200, metrics=("accuracy",))["accuracy"]
    assert per["excludes_zero"] and per["seeds"] == 3
    with pytest.raises(LongtailError, match="same number"):
        B.seed_paired_bootstrap(good, weak[:2], y, resamples=10)
    with pytest.raises(LongtailError, match="one targets vector"):
        B.seed_paired_bootstrap(good, weak, [y, y, y], resamples=10)


# ------------------------------------------------------------------------------ McNemar, Holm
def test_mcnemar_matches_statsmodels():
    contingency = pytest.importorskip("statsmodels.stats.contingency_tables")
    rng = np.random.default_rng(13)
    a, b = rng.random(120) < 0.75, rng.random(120) < 0.65
    out = B.mcnemar(a, b)
    table = [[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]]
    assert (out["b"], out["c"]) == (int(np.sum(a & ~b)), int(np.sum(~a & b)))
    assert out["p_value"] == pytest.approx(contingency.mcnemar(table, exact=True).pvalue, rel=1e-12)
    assert B.mcnemar(a, a) == {"b": 0, "c": 0, "p_value": 1.0}
    with pytest.raises(LongtailError, match="same length"):
        B.mcnemar(a, b[:10])


def test_holm_matches_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.2, 0.04, 0.9])
    assert B.holm(p) == pytest.approx(multitest.multipletests(p, method="holm")[1], abs=1e-15)
    with_nan = B.holm([0.01, None, 0.04, np.nan])
    assert np.isnan(with_nan[[1, 3]]).all() and with_nan[[0, 2]] == pytest.approx(multitest.multipletests([0.01, 0.04], method="holm")[1])
    assert B.holm([0.6, 0.7]).tolist() == [1.0, 1.0]


# ------------------------------------------------------------------------------ bad input
def test_bad_input_messages():
    rng = np.random.default_rng(14)
    y = rng.integers(0, 3, 40)
    z = noisy_logits(rng, y, 3)
    for kwargs, message in [({"confidence": 1.0}, "confidence must be a level strictly between 0 and 1"),
                            ({"confidence": 0}, "confidence must be a level strictly between 0 and 1"),
                            ({"resamples": 0}, "resamples must be an integer >= 1"),
                            ({"method": "bc"}, "unknown interval method 'bc'"),
                            ({"groups": np.arange(39)}, "groups has 39 entries for 40 labelled images"),
                            ({"metrics": ("auc",)}, "unknown metric 'auc'")]:
        with pytest.raises(LongtailError, match=message):
            B.bootstrap_intervals(z, y, **kwargs)
    with pytest.raises(LongtailError, match=r"the two runs' logits differ in shape \(\(40, 3\) vs \(39, 3\)\)"):
        B.paired_bootstrap(z, z[1:], y)
    with pytest.raises(LongtailError, match="targets must be a vector of 40 labels"):
        B.paired_bootstrap(z, z, y[1:])
    with pytest.raises(LongtailError, match="confidence must be"):
        B.interval([0.1, 0.2], 0.1, 95, "percentile")
    with pytest.raises(LongtailError, match="groups has 3 entries"):
        B.resample_weights(40, 10, rng, groups=[1, 2, 3])
