"""The summary metrics of a split under integer multiplicity weights, for many resamples at once.

A bootstrap resample draws image ``i`` ``w_i`` times. Scoring it means scoring the expanded
rows ``logits[idx]``, but every metric of :func:`longtail.metrics.compute` depends on the rows
only through class-wise sums (support, true positives, predictions, calibration bins) and
rank comparisons, so it can be computed from the weights instead: ``WeightedScorer(z, y)(w)``
equals ``compute(z[idx], y[idx])`` for ``w = bincount(idx, minlength=n)``, to float rounding.
Everything that does not depend on ``w`` (softmax, argmax, the sort of every score column, the
tie groups) is done once; a B x n weight matrix is then evaluated in chunks of bounded memory.

The conventions are compute's (see :mod:`.classification`): macro averages over the classes
present in the resampled targets, precision 0 for a never-predicted class, G-mean with
``GMEAN_CORRECTION``, IBA with ``IBA_ALPHA``, Hand & Till MAUC and one-vs-rest macro AUC over
present classes, pooled micro AUC, 15-bin ECE as :func:`.calibration.reliability` bins it. A
metric compute reports as None (or leaves out, like top-5 accuracy for C <= 5) is NaN here.
AUCs are weighted Mann-Whitney statistics with ties counted 1/2; with integer weights the win
counts are sums of integers and halves, so they are exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.errors import LongtailError, did_you_mean
from .calibration import ECE_BINS
from .classification import GMEAN_CORRECTION, IBA_ALPHA
from .inputs import check_inputs, softmax, to_numpy

#: the summary metrics compute() returns at top level (SUMMARY_METRICS' keys), in that order
WEIGHTED_METRICS: tuple[str, ...] = (
    "accuracy", "top5_accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1",
    "weighted_precision", "weighted_recall", "weighted_f1", "gmean", "iba", "mauc", "macro_auc", "micro_auc", "ece",
)

_CHUNK_BYTES = 200 * 2**20  # working memory of one chunk of resamples
_PAIRWISE = ("mauc", "macro_auc")


def check_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    """The requested metric names as a tuple, or a one-line error naming an unknown one."""
    if isinstance(metrics, str):
        metrics = (metrics,)
    out = tuple(str(m) for m in metrics)
    if not out:
        raise LongtailError(f"no metrics requested; choose from {', '.join(WEIGHTED_METRICS)}")
    for m in out:
        if m not in WEIGHTED_METRICS:
            raise LongtailError(f"unknown metric '{m}'{did_you_mean(m, WEIGHTED_METRICS)}; choose from {', '.join(WEIGHTED_METRICS)}")
    return out


def labelled_rows(logits: Any, targets: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(float64 logits, int64 targets, positions in the input) of the labelled rows (target >= 0), checked by check_inputs."""
    z, y = to_numpy(logits), to_numpy(targets)
    if not (y.ndim == 1 and z.ndim >= 1 and len(y) == len(z) and np.issubdtype(y.dtype, np.number)):
        zl, yl = check_inputs(z, y)  # says what is wrong with the shapes
        return zl, yl, np.arange(len(yl))
    index = np.flatnonzero(y >= 0)
    if len(y) and not len(index):
        raise LongtailError("no labelled samples (target >= 0) to score; unlabelled splits have no metrics")
    zl, yl = check_inputs(z if len(index) == len(z) else z[index], y if len(index) == len(y) else y[index])
    return zl, yl, index


def _segment_sums(values: np.ndarray, starts: np.ndarray, positions: np.ndarray, width: int) -> np.ndarray:
    """B x width: sums of ``values`` (B x n, columns already grouped) over the segments that begin at ``starts``, placed at ``positions``."""
    out = np.zeros((values.shape[0], width))
    if len(starts):
        out[:, positions] = np.add.reduceat(values, starts, axis=1)
    return out


class WeightedScorer:
    """Every summary metric of one split, for any number of weight vectors over its labelled rows.

    ``n`` is the number of labelled rows (target >= 0) and ``index`` their positions in the input;
    a weight vector has one entry per labelled row, in input order. Build once, call with a
    B x n matrix (or one n-vector): the per-split work (softmax, sorts, tie groups) is not redone.
    """

    def __init__(self, logits: Any, targets: Any, metrics: Sequence[str] = WEIGHTED_METRICS) -> None:
        self.metrics = check_metrics(metrics)
        z, y, self.index = labelled_rows(logits, targets)
        self.n, self.num_classes = z.shape
        n, c = z.shape
        # rows grouped by class (stable), so class sums are contiguous segment sums
        self._order = np.argsort(y, kind="stable")
        y = y[self._order]
        probs = softmax(z[self._order])
        pred = probs.argmax(axis=1)
        self._correct = (pred == y).astype(np.float64)
        support = np.bincount(y, minlength=c)
        self._classes = np.flatnonzero(support)  # the only classes a resample can contain
        self._class_starts = np.searchsorted(y, self._classes)
        self._pred_order = np.argsort(pred, kind="stable")
        pred_classes = np.unique(pred)
        self._pred_classes, self._pred_starts = pred_classes, np.searchsorted(pred[self._pred_order], pred_classes)
        self._top5 = None
        if c > 5:  # compute() reports top-5 accuracy only then
            true_score = probs[np.arange(n), y][:, None]
            self._top5 = ((probs > true_score).sum(axis=1) < 5).astype(np.float64)
        # ECE: reliability()'s bins of the max probability
        conf = probs.max(axis=1)
        bins = np.clip(np.ceil(conf * ECE_BINS).astype(np.int64) - 1, 0, ECE_BINS - 1)
        self._bin_order = np.argsort(bins, kind="stable")
        sorted_bins = bins[self._bin_order]
        self._bins = np.unique(sorted_bins)
        self._bin_starts = np.searchsorted(sorted_bins, self._bins)
        self._bin_correct = self._correct[self._bin_order]
        self._bin_conf = conf[self._bin_order]
        # one-vs-rest / Hand & Till: per present class i, its rows sorted on column i, and where
        # every row's column-i score falls among them (first >=, first >): the tie group
        self._columns: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        if any(m in self.metrics for m in _PAIRWISE):
            for i, start in zip(self._classes, self._class_starts):
                own = np.arange(start, start + support[i])
                own = own[np.argsort(probs[own, i], kind="stable")]
                values = probs[own, i]
                lo = np.searchsorted(values, probs[:, i], side="left").astype(np.intp)
                hi = np.searchsorted(values, probs[:, i], side="right").astype(np.intp)
                self._columns.append((own, lo, hi))
        # micro AUC: positives are the n true-class scores, negatives the n (C - 1) others
        self._micro: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        if "micro_auc" in self.metrics:
            true_score = probs[np.arange(n), y]
            pos_order = np.argsort(true_score, kind="stable")
            values = true_score[pos_order]
            negatives = probs[~np.eye(c, dtype=bool)[y]].reshape(n, c - 1)
            lo = np.searchsorted(values, negatives, side="left").astype(np.intp)
            hi = np.searchsorted(values, negatives, side="right").astype(np.intp)
            self._micro = (pos_order, lo, hi)
        per_row = 10 * n + 2 * len(self._classes) ** 2 + 4 * c + (3 * n * (c - 1) if self._micro is not None else 0)
        self._chunk = max(1, int(_CHUNK_BYTES // (8 * per_row)))

    # ------------------------------------------------------------------------------ call
    def __call__(self, weights: Any) -> dict[str, np.ndarray]:
        """{metric: B-vector} for a B x n (or n) weight matrix; NaN where a metric is undefined."""
        w = np.asarray(weights)
        if w.ndim == 1:
            w = w[None, :]
        if w.ndim != 2 or w.shape[1] != self.n:
            raise LongtailError(f"weights must be a B x {self.n} matrix (one weight per labelled row), got shape {np.shape(weights)}")
        if not np.issubdtype(w.dtype, np.number) or (w.size and (not np.isfinite(w).all() or (w < 0).any())):
            raise LongtailError("weights must be finite non-negative multiplicities")
        out = {m: np.empty(len(w)) for m in self.metrics}
        for s in range(0, len(w), self._chunk):
            part = self._chunk_metrics(np.asarray(w[s:s + self._chunk][:, self._order], dtype=np.float64))
            for m in self.metrics:
                out[m][s:s + self._chunk] = part[m]
        return out

    def _chunk_metrics(self, w: np.ndarray) -> dict[str, np.ndarray]:
        c = self.num_classes
        want = set(self.metrics)
        total = w.sum(axis=1)
        support = _segment_sums(w, self._class_starts, self._classes, c)
        tp = _segment_sums(w * self._correct, self._class_starts, self._classes, c)
        predicted = _segment_sums(w[:, self._pred_order], self._pred_starts, self._pred_classes, c)
        present = support > 0
        k = present.sum(axis=1)
        out: dict[str, np.ndarray] = {}
        with np.errstate(divide="ignore", invalid="ignore"):
            out["accuracy"] = tp.sum(axis=1) / total
            if "top5_accuracy" in want:
                out["top5_accuracy"] = (w @ self._top5) / total if self._top5 is not None else np.full(len(w), np.nan)
            recall = np.where(present, tp / support, np.nan)
            precision = np.where(predicted > 0, tp / predicted, 0.0)
            f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), 0.0)
            kk = np.where(k > 0, k, np.nan)
            out["macro_recall"] = np.where(present, recall, 0.0).sum(axis=1) / kk
            out["balanced_accuracy"] = out["macro_recall"]
            out["macro_precision"] = np.where(present, precision, 0.0).sum(axis=1) / kk
            out["macro_f1"] = np.where(present, f1, 0.0).sum(axis=1) / kk
            out["weighted_precision"] = (support * precision).sum(axis=1) / total
            out["weighted_recall"] = (support * np.where(present, recall, 0.0)).sum(axis=1) / total
            out["weighted_f1"] = (support * f1).sum(axis=1) / total
            if want & {"gmean", "iba"}:
                negatives = total[:, None] - support
                specificity = np.where(negatives > 0, (negatives - predicted + tp) / negatives, 0.0)  # imblearn: 0/0 -> 0
                corrected = np.where(recall == 0, GMEAN_CORRECTION, recall)
                out["gmean"] = np.exp(np.where(present, np.log(np.where(present, corrected, 1.0)), 0.0).sum(axis=1) / kk)
                iba = (1 + IBA_ALPHA * (recall - specificity)) * np.sqrt(recall * specificity) ** 2
                defined = ~np.isnan(iba)
                out["iba"] = np.where(defined, iba, 0.0).sum(axis=1) / np.where(defined.any(axis=1), defined.sum(axis=1), np.nan)
            if want & set(_PAIRWISE):
                out.update(self._pairwise(w, support, total))
            if "micro_auc" in want:
                out["micro_auc"] = self._micro_auc(w, total)
            if "ece" in want:
                wb = w[:, self._bin_order]
                acc = np.add.reduceat(wb * self._bin_correct, self._bin_starts, axis=1)
                conf = np.add.reduceat(wb * self._bin_conf, self._bin_starts, axis=1)
                out["ece"] = np.abs(acc - conf).sum(axis=1) / total
        return {m: out[m] for m in self.metrics}

    def _pairwise(self, w: np.ndarray, support: np.ndarray, total: np.ndarray) -> dict[str, np.ndarray]:
        """One-vs-rest macro AUC and Hand & Till MAUC from the weighted win counts W[i, j] (ranking.pairwise_wins)."""
        cls = self._classes
        kf = len(cls)
        wins = np.zeros((len(w), kf, kf))
        for p, (own, lo, hi) in enumerate(self._columns):
            cum = np.zeros((len(w), len(own) + 1))
            np.cumsum(w[:, own], axis=1, out=cum[:, 1:])
            tied = np.take(cum, hi, axis=1)
            tied += np.take(cum, lo, axis=1)
            tied *= -0.5
            tied += cum[:, -1:]  # = class-i weight above the row + half the tied class-i weight
            tied *= w
            wins[:, p, :] = np.add.reduceat(tied, self._class_starts, axis=1)
        s = support[:, cls]
        n = total[:, None]
        diag = np.einsum("bii->bi", wins)
        auc = (wins.sum(axis=2) - diag) / (s * (n - s))
        auc[(s == 0) | (s == n)] = np.nan
        defined = ~np.isnan(auc)
        out = {"macro_auc": np.where(defined, auc, 0.0).sum(axis=1) / np.where(defined.any(axis=1), defined.sum(axis=1), np.nan)}
        present = s > 0
        pair = present[:, :, None] & present[:, None, :] & ~np.eye(kf, dtype=bool)
        a = np.where(pair, wins / (s[:, :, None] * s[:, None, :]), 0.0)
        k = present.sum(axis=1)
        out["mauc"] = np.where(k >= 2, a.sum(axis=(1, 2)) / np.where(k >= 2, k * (k - 1), 1), np.nan)
        return out

    def _micro_auc(self, w: np.ndarray, total: np.ndarray) -> np.ndarray:
        """Pooled (one-hot target, probability) ROC AUC: positive weight above each negative entry, ties 1/2."""
        assert self._micro is not None
        pos_order, lo, hi = self._micro
        cum = np.zeros((len(w), self.n + 1))
        np.cumsum(w[:, pos_order], axis=1, out=cum[:, 1:])
        above = np.take(cum, hi, axis=1)
        above += np.take(cum, lo, axis=1)  # B x n x (C - 1)
        right = total[:, None] * (self.num_classes - 1) - 0.5 * above.sum(axis=2)
        return (w * right).sum(axis=1) / (total * total * (self.num_classes - 1))
