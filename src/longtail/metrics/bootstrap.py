"""Bootstrap confidence intervals of the summary metrics, and paired comparisons of runs (issue #27).

A test set is one sample of images, so every metric on it is an estimate: resampling the images
(or whole groups of them, e.g. the images of one lesion, which are not independent evidence)
with replacement shows how much it would move on another sample of the same size. A resample is
a weight vector (how many times each image was drawn), scored by
:class:`~longtail.metrics.weighted.WeightedScorer` without materialising the resampled rows.
Two runs scored on the same images are compared *paired*: the same weight vectors score both,
so the interval is that of the difference, which is much narrower than two overlapping intervals
suggest. Pure numpy/scipy; no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import ndtr, ndtri
from scipy.stats import binomtest

from ..core.errors import LongtailError
from .classification import compute
from .inputs import to_numpy
from .weighted import WEIGHTED_METRICS, WeightedScorer, check_metrics, labelled_rows

METHODS = ("percentile", "bca")
_JACKKNIFE_BLOCK = 512  # leave-one-out weight rows scored at a time (BCa)


# ----------------------------------------------------------------------------- checks
def _check_settings(resamples: int, confidence: float, method: str = "percentile") -> None:
    """One-line errors for settings no interval can be computed with."""
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) or resamples < 1:
        raise LongtailError(f"resamples must be an integer >= 1, got {resamples!r}")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float, np.floating)) or not 0 < confidence < 1:
        raise LongtailError(f"confidence must be a level strictly between 0 and 1 (e.g. 0.95), got {confidence!r}")
    if method not in METHODS:
        raise LongtailError(f"unknown interval method '{method}'; choose 'percentile' or 'bca'")


def _group_ids(groups: Any, n: int, index: np.ndarray | None = None, total: int | None = None) -> np.ndarray | None:
    """Integer group ids (0..G-1) of the n labelled images, or None. ``groups`` may have one entry per labelled
    image, or one per input row (then the labelled rows ``index`` of ``total`` are kept)."""
    if groups is None:
        return None
    g = to_numpy(groups)
    if g.ndim != 1:
        raise LongtailError(f"groups must be a vector of one group id per image, got shape {g.shape}")
    if len(g) != n:
        if index is not None and total is not None and len(g) == total:
            g = g[index]
        else:
            raise LongtailError(f"groups has {len(g)} entries for {n} labelled images; give one group id per image")
    return np.unique(g, return_inverse=True)[1].reshape(-1)


# ----------------------------------------------------------------------------- weights
def resample_weights(n: int, resamples: int, rng: np.random.Generator, groups: Any = None) -> np.ndarray:
    """B x n int32 multiplicities of ``resamples`` bootstrap resamples of n images.

    Without ``groups``: n images drawn with replacement. With ``groups`` (n group ids): as many
    groups as there are, drawn with replacement, every image weighted by its group's multiplicity,
    so the images of one lesion (or patient) move together, as the unit that was sampled does.
    """
    _check_settings(resamples, 0.5)
    if n < 1:
        raise LongtailError("no images to resample")
    ids = _group_ids(groups, n)
    units = n if ids is None else int(ids.max()) + 1
    draws = rng.integers(0, units, size=(resamples, units), dtype=np.int64 if units > 2**31 - 1 else np.int32)
    offsets = (np.arange(resamples, dtype=np.int64) * units)[:, None]
    counts = np.bincount((draws + offsets).ravel(), minlength=resamples * units).reshape(resamples, units).astype(np.int32)
    return counts if ids is None else counts[:, ids]


def jackknife_weights(n: int, groups: Any = None, *, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Leave-one-out weights for BCa's acceleration: row j leaves out image j (or group j) and keeps the rest.

    ``start`` / ``stop`` select rows, so n x n never has to exist at once for large n.
    """
    if n < 1:
        raise LongtailError("no images to resample")
    ids = np.arange(n) if groups is None else _group_ids(groups, n)
    units = int(ids.max()) + 1
    stop = units if stop is None else min(stop, units)
    rows = np.arange(start, stop)
    return (ids[None, :] != rows[:, None]).astype(np.int32)


def _jackknife_values(scorer: WeightedScorer, ids: np.ndarray | None) -> dict[str, np.ndarray]:
    units = scorer.n if ids is None else int(ids.max()) + 1
    parts = [scorer(jackknife_weights(scorer.n, ids, start=s, stop=s + _JACKKNIFE_BLOCK)) for s in range(0, units, _JACKKNIFE_BLOCK)]
    return {m: np.concatenate([p[m] for p in parts]) for m in scorer.metrics}


# ----------------------------------------------------------------------------- intervals
class Interval(tuple):
    """(low, high), plus how it was obtained: ``method`` used, ``note`` (why BCa fell back to percentile),
    ``used`` (finite replicates) and ``undefined`` (NaN replicates left out)."""

    method: str
    note: str | None
    used: int
    undefined: int

    def __new__(cls, low: float, high: float, method: str, note: str | None, used: int, undefined: int) -> Interval:  # noqa: PYI034 (typing.Self needs 3.11)
        self = super().__new__(cls, (float(low), float(high)))
        self.method, self.note, self.used, self.undefined = method, note, used, undefined
        return self


def interval(replicates: Any, estimate: float, confidence: float, method: str, jackknife: Any = None) -> Interval:
    """The two-sided ``confidence`` interval from bootstrap ``replicates`` of a statistic whose value is ``estimate``.

    ``percentile``: the alpha/2 and 1 - alpha/2 quantiles of the replicates (linear interpolation,
    as scipy.stats.bootstrap). ``bca`` (Efron 1987): the quantile levels are shifted by the bias
    correction z0 = Phi^-1(share of replicates below the estimate, ties counted 1/2, as scipy does,
    so a statistic with many tied values is not pushed one way) and the acceleration
    a = sum(U^3) / (6 sum(U^2)^1.5) of the jackknife values (U = their mean - each), which corrects
    for the standard error changing with the value (a proportion near 0 or 1). BCa falls back to
    percentile, saying why in ``note``, when z0 is infinite (every replicate on one side) or the
    jackknife is degenerate (constant, or undefined somewhere). NaN replicates (the metric was
    undefined in that resample, e.g. an AUC with one class drawn) are left out and counted.
    """
    _check_settings(1, confidence, method)
    r = np.asarray(replicates, dtype=np.float64).ravel()
    finite = r[~np.isnan(r)]
    undefined = int(len(r) - len(finite))
    if not len(finite) or estimate is None or math.isnan(float(estimate)):
        return Interval(math.nan, math.nan, method, "undefined in every resample" if not len(finite) else "undefined on the full split",
                        len(finite), undefined)
    alpha = (1 - confidence) / 2
    levels, note, used_method = (alpha, 1 - alpha), None, method
    if method == "bca":
        bca, note = _bca_levels(finite, float(estimate), alpha, jackknife)
        if bca is None:
            used_method = "percentile"
        else:
            levels = bca
    low, high = np.quantile(finite, levels)
    return Interval(low, high, used_method, note, len(finite), undefined)


def _bca_levels(finite: np.ndarray, estimate: float, alpha: float, jackknife: Any) -> tuple[tuple[float, float] | None, str | None]:
    share = (np.count_nonzero(finite < estimate) + np.count_nonzero(finite <= estimate)) / (2 * len(finite))
    z0 = float(ndtri(share))
    if not math.isfinite(z0):
        return None, f"BCa fell back to percentile: every replicate is {'below' if share == 1 else 'above'} the estimate (infinite bias correction)"
    if jackknife is None:
        return None, "BCa fell back to percentile: no jackknife values given"
    jack = np.asarray(jackknife, dtype=np.float64).ravel()
    if len(jack) < 2 or np.isnan(jack).any():
        return None, ("BCa fell back to percentile: the metric is undefined in "
                      f"{int(np.isnan(jack).sum())} of {len(jack)} leave-one-out samples" if len(jack) >= 2 else
                      "BCa fell back to percentile: the jackknife needs two images or groups or more")
    u = jack.mean() - jack
    den = float(np.sum(u**2))
    if np.abs(u).max() <= 1e-12 * max(1.0, abs(float(jack.mean()))):  # constant up to rounding: a would be noise
        return None, "BCa fell back to percentile: the jackknife is constant (no acceleration can be estimated)"
    a = float(np.sum(u**3)) / (6 * den**1.5)
    levels = []
    for z in (float(ndtri(alpha)), float(ndtri(1 - alpha))):
        shift = z0 + z
        denominator = 1 - a * shift
        if denominator <= 0:
            return None, "BCa fell back to percentile: the acceleration is too large for this level"
        levels.append(float(ndtr(z0 + shift / denominator)))
    return (levels[0], levels[1]), None


def _p_value(diffs: np.ndarray) -> float | None:
    """Two-sided percentile-bootstrap p-value of 'no difference' (see :func:`paired_bootstrap`)."""
    d = diffs[~np.isnan(diffs)]
    if not len(d):
        return None
    b = len(d)
    below = (1 + np.count_nonzero(d <= 0)) / (b + 1)
    above = (1 + np.count_nonzero(d >= 0)) / (b + 1)
    return float(min(1.0, 2 * min(below, above)))


def _none(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def _estimates(z: np.ndarray, y: np.ndarray, metrics: Sequence[str]) -> dict[str, float | None]:
    """compute()'s values of ``metrics`` (None where undefined or absent, as top-5 accuracy for C <= 5)."""
    r = compute(z, y)
    return {m: _none(r.get(m)) for m in metrics}


def _entry(iv: Interval, **values: Any) -> dict[str, Any]:
    out = {**values, "low": _none(iv[0]), "high": _none(iv[1]), "resamples": iv.used, "undefined": iv.undefined}
    if iv.note:
        out["note"] = iv.note
    return out


# ----------------------------------------------------------------------------- one run
def bootstrap_intervals(logits: Any, targets: Any, *, groups: Any = None, resamples: int = 1000, confidence: float = 0.95,
                        method: str = "percentile", seed: int = 0, metrics: Sequence[str] = WEIGHTED_METRICS) -> dict[str, dict[str, Any]]:
    """{metric: {estimate, low, high, resamples, undefined[, note]}} on the labelled rows (target >= 0) of one split.

    ``estimate`` is compute()'s value on the full split; ``low``/``high`` the ``confidence``
    interval from ``resamples`` resamples of images (or of ``groups``: one id per labelled image,
    or per input row); ``resamples`` the replicates used and ``undefined`` those where the metric
    was undefined (left out). None where undefined on the full split. The same ``seed`` gives the
    same intervals. BCa scores one leave-one-out sample per image (or group) as well, which for
    large n costs more than the resamples.
    """
    _check_settings(resamples, confidence, method)
    metrics = check_metrics(metrics)
    z, y, index = labelled_rows(logits, targets)
    scorer = WeightedScorer(z, y, metrics)
    ids = _group_ids(groups, scorer.n, index, len(to_numpy(targets)))
    reps = scorer(resample_weights(scorer.n, resamples, np.random.default_rng(seed), ids))
    center = scorer(np.ones(scorer.n))  # compute()'s values as the replicates round them (BCa's z0 compares the two)
    jack = _jackknife_values(scorer, ids) if method == "bca" else {}
    estimates = _estimates(z, y, metrics)
    out: dict[str, dict[str, Any]] = {}
    for m in metrics:
        est = estimates[m]
        iv = interval(reps[m], center[m][0] if est is not None else math.nan, confidence, method, jack.get(m))
        out[m] = _entry(iv, estimate=est)
    return out


# ----------------------------------------------------------------------------- two runs
def paired_bootstrap(logits_a: Any, logits_b: Any, targets: Any, *, groups: Any = None, resamples: int = 1000, confidence: float = 0.95,
                     method: str = "percentile", seed: int = 0, metrics: Sequence[str] = WEIGHTED_METRICS) -> dict[str, dict[str, Any]]:
    """Run A against run B on the same images: {metric: {a, b, difference, low, high, p_value, resamples, undefined}}.

    Every resample scores both runs with the same weights, so the interval is that of the paired
    difference a - b (``difference``: on the full split, compute()'s values). ``p_value`` is the
    two-sided percentile-bootstrap test of "no difference": with d_1..d_B the resampled
    differences, p = min(1, 2 min((1 + #{d_b <= 0}) / (B + 1), (1 + #{d_b >= 0}) / (B + 1))),
    i.e. twice the bootstrap share on the far side of 0 (the +1 keeps it above 0 with finite B);
    identical runs give p = 1, and p < 1 - confidence about when the percentile interval excludes 0.
    """
    _check_settings(resamples, confidence, method)
    metrics = check_metrics(metrics)
    za, y, index = labelled_rows(logits_a, targets)
    zb_all = to_numpy(logits_b)
    if zb_all.shape != to_numpy(logits_a).shape:
        raise LongtailError(f"the two runs' logits differ in shape ({to_numpy(logits_a).shape} vs {zb_all.shape}); "
                            "a paired comparison needs both runs scored on the same images and classes")
    zb, _, _ = labelled_rows(zb_all, targets)
    sa, sb = WeightedScorer(za, y, metrics), WeightedScorer(zb, y, metrics)
    ids = _group_ids(groups, sa.n, index, len(to_numpy(targets)))
    weights = resample_weights(sa.n, resamples, np.random.default_rng(seed), ids)
    ra, rb = sa(weights), sb(weights)
    ones = np.ones(sa.n)
    ca, cb = sa(ones), sb(ones)
    ja, jb = (_jackknife_values(sa, ids), _jackknife_values(sb, ids)) if method == "bca" else ({}, {})
    ea, eb = _estimates(za, y, metrics), _estimates(zb, y, metrics)
    out: dict[str, dict[str, Any]] = {}
    for m in metrics:
        defined = ea[m] is not None and eb[m] is not None
        d = ra[m] - rb[m]
        iv = interval(d, (ca[m] - cb[m])[0] if defined else math.nan, confidence, method, (ja[m] - jb[m]) if method == "bca" else None)
        out[m] = _entry(iv, a=ea[m], b=eb[m], difference=(ea[m] - eb[m]) if defined else None,
                        p_value=_p_value(d) if defined else None)
        out[m] = {k: out[m][k] for k in ("a", "b", "difference", "low", "high", "p_value", "resamples", "undefined", "note") if k in out[m]}
    return out


def seed_paired_bootstrap(logits_a: Sequence[Any], logits_b: Sequence[Any], targets: Any, *, groups: Any = None, same_test_set: bool = True,
                          resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
                          metrics: Sequence[str] = WEIGHTED_METRICS) -> dict[str, dict[str, Any]]:
    """Method A against baseline B over S training seeds (A's seed s paired with B's seed s, by position).

    {metric: {difference, low, high, p_value, excludes_zero, seeds}}: ``difference`` is the mean over
    seeds of the full-split differences m(A_s) - m(B_s). The interval is a two-level bootstrap,
    because a result has two sources of chance: the training seed and the test images. Each
    replicate draws S seeds with replacement AND resamples the test set (one weight vector shared
    by every drawn seed when they were tested on the same images, ``same_test_set``; one per drawn
    seed otherwise, and then ``targets``/``groups`` may be one per seed), and takes the mean over the
    drawn seeds of m(A_s, w) - m(B_s, w). Not a t-interval over the S seed differences: with 3 seeds
    it has 2 degrees of freedom and, worse, it ignores the sampling of the test set that every seed
    shares, so a lucky test set would look like a sure win. With few seeds the seed level is coarse
    (only S^S seed draws), so the interval mostly reflects the test-set level plus the visible seed
    spread; more seeds are the remedy. ``p_value`` as in :func:`paired_bootstrap` (percentile
    test of "no difference"); percentile intervals only.
    """
    _check_settings(resamples, confidence)
    metrics = check_metrics(metrics)
    if isinstance(logits_a, np.ndarray) and logits_a.ndim == 2 or isinstance(logits_b, np.ndarray) and logits_b.ndim == 2:
        raise LongtailError("seed_paired_bootstrap takes a list of logits per run (one per seed); use paired_bootstrap for one pair")
    runs_a, runs_b = list(logits_a), list(logits_b)
    if not runs_a or len(runs_a) != len(runs_b):
        raise LongtailError(f"seed_paired_bootstrap needs the same number (>= 1) of seeds for both runs, got {len(runs_a)} and {len(runs_b)}")
    s_count = len(runs_a)
    per_seed = not same_test_set and isinstance(targets, (list, tuple))
    if same_test_set and isinstance(targets, (list, tuple)) and len(targets) and np.ndim(targets[0]) == 1:
        raise LongtailError("same_test_set=True takes one targets vector; pass same_test_set=False for one test set per seed")
    ys = list(targets) if per_seed else [targets] * s_count
    gs = (list(groups) if isinstance(groups, (list, tuple)) else [groups] * s_count) if per_seed else [groups] * s_count
    if len(ys) != s_count or len(gs) != s_count:
        raise LongtailError(f"give one targets (and groups) vector per seed: {s_count} seeds, {len(ys)} targets, {len(gs)} groups")
    pairs, ids, diffs = [], [], []
    for s in range(s_count):
        if to_numpy(runs_a[s]).shape != to_numpy(runs_b[s]).shape:
            raise LongtailError(f"seed {s}: the two runs' logits differ in shape ({to_numpy(runs_a[s]).shape} vs {to_numpy(runs_b[s]).shape})")
        za, y, index = labelled_rows(runs_a[s], ys[s])
        zb, _, _ = labelled_rows(runs_b[s], ys[s])
        sa, sb = WeightedScorer(za, y, metrics), WeightedScorer(zb, y, metrics)
        pairs.append((sa, sb))
        ids.append(_group_ids(gs[s], sa.n, index, len(to_numpy(ys[s]))))
        ea, eb = _estimates(za, y, metrics), _estimates(zb, y, metrics)
        diffs.append({m: None if ea[m] is None or eb[m] is None else ea[m] - eb[m] for m in metrics})
    if same_test_set and len({p[0].n for p in pairs}) > 1:
        raise LongtailError("same_test_set=True but the seeds have different numbers of labelled images")
    rng_w, rng_s = np.random.default_rng(seed), np.random.default_rng([seed, 1])
    picks = rng_s.integers(0, s_count, size=(resamples, s_count))  # the seeds each replicate draws
    values = {m: np.full((resamples, s_count), np.nan) for m in metrics}  # m(A, w) - m(B, w) of each drawn seed
    if same_test_set:
        weights = resample_weights(pairs[0][0].n, resamples, rng_w, ids[0])
        for s, (sa, sb) in enumerate(pairs):
            if not (picks == s).any():
                continue
            ra, rb = sa(weights), sb(weights)
            for m in metrics:
                d = ra[m] - rb[m]
                values[m][picks == s] = np.broadcast_to(d[:, None], picks.shape)[picks == s]
    else:
        for s, (sa, sb) in enumerate(pairs):
            where = np.nonzero(picks == s)
            if not len(where[0]):
                continue
            weights = resample_weights(sa.n, len(where[0]), rng_w, ids[s])
            ra, rb = sa(weights), sb(weights)
            for m in metrics:
                values[m][where] = ra[m] - rb[m]
    out: dict[str, dict[str, Any]] = {}
    for m in metrics:
        defined = all(d[m] is not None for d in diffs)
        reps = values[m].mean(axis=1)
        diff = float(np.mean([d[m] for d in diffs])) if defined else None
        iv = interval(reps, diff if defined else math.nan, confidence, "percentile")
        low, high = _none(iv[0]), _none(iv[1])
        out[m] = {"difference": diff, "low": low, "high": high, "p_value": _p_value(reps) if defined else None,
                  "excludes_zero": bool(low is not None and high is not None and (low > 0 or high < 0)), "seeds": s_count}
    return out


# ----------------------------------------------------------------------------- tests on predictions
def mcnemar(correct_a: Any, correct_b: Any) -> dict[str, Any]:
    """McNemar's exact test on paired correctness: {b: A right and B wrong, c: A wrong and B right, p_value}.

    Only the discordant images carry evidence; under "equally accurate" b ~ Binomial(b + c, 1/2),
    so p is the exact two-sided binomial p-value (1 when b + c = 0). Resamples images, not groups:
    with correlated images (lesions) prefer the grouped paired bootstrap.
    """
    a, b_ = np.asarray(to_numpy(correct_a)).astype(bool), np.asarray(to_numpy(correct_b)).astype(bool)
    if a.ndim != 1 or a.shape != b_.shape:
        raise LongtailError(f"correct_a and correct_b must be two vectors of the same length, got shapes {a.shape} and {b_.shape}")
    b, c = int(np.sum(a & ~b_)), int(np.sum(~a & b_))
    p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
    return {"b": b, "c": c, "p_value": min(1.0, p)}


def holm(p_values: Any) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values: controls the chance of any false 'significant' among m
    comparisons without Bonferroni's loss of power. The k-th smallest of m is multiplied by (m - k + 1),
    made monotone and capped at 1; NaN (None) entries are passed through and not counted in m."""
    p = np.asarray([math.nan if v is None else v for v in np.ravel(np.asarray(p_values, dtype=object))], dtype=np.float64)
    if ((p < 0) | (p > 1)).any():
        raise LongtailError("p-values must lie in [0, 1]")
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if len(ok):
        order = ok[np.argsort(p[ok], kind="stable")]
        m = len(order)
        adjusted = np.maximum.accumulate(p[order] * (m - np.arange(m)))
        out[order] = np.minimum(adjusted, 1.0)
    return out
