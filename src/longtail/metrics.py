"""Every evaluation metric, computed once from saved logits, labels and training class counts.

One call, :func:`compute`, returns a JSON-ready dict: summary floats in [0, 1], a per-class
table, the confusion matrix, many/medium/few-shot accuracy and, on request, the CDB
majority/minority protocol and the ISIC 2017 variants. scikit-learn and imbalanced-learn do
the counting; this module only fixes the conventions, which are the part that differs between
papers:

* **Never-predicted class**: its precision is 0 (scikit-learn ``zero_division=0``), so it
  pulls macro precision down, as in the CDB EGTEA protocol.
* **Class absent from the test targets** (support 0): its recall, F1, G-mean, IBA and AUC are
  undefined and reported as ``None``. Every *macro* average (balanced accuracy, macro
  precision / recall / F1, multi-class G-mean, IBA, macro AUC, MAUC) is taken over the classes
  present in the targets, i.e. scikit-learn called with ``labels=<present classes>``; this is
  what ``balanced_accuracy_score`` does, so ``balanced_accuracy == macro_recall`` always.
  Predictions *into* an absent class still cost recall of the true classes. The per-class
  table and the confusion matrix always have all C classes (``labels=range(C)``).
* ``weighted_precision`` / ``weighted_recall`` / ``weighted_f1`` are support-weighted (SPBL's first
  summary row), so absent classes have weight 0 anyway; ``weighted_recall`` equals ``accuracy``.
* ``micro_auc`` is one ROC-AUC over all N x C (one-hot target, probability) pairs, scikit-learn's
  ``roc_auc_score(average='micro')`` on the label-binarized targets (SPBL ships it beside the macro AUC).
* A metric that cannot be defined at all (e.g. an AUC with one class present) is ``None``,
  never NaN, so ``results.json`` stays valid JSON.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from imblearn.metrics import sensitivity_specificity_support
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

from .errors import LongtailError

GMEAN_CORRECTION = 0.001  # SPBL / imbalanced-learn: a zero recall counts as 0.001 in the product
IBA_ALPHA = 0.1
ECE_BINS = 15
SHOT_GROUPS = ("many", "medium", "few")

CONVENTIONS = (
    "Macro averages (balanced accuracy, macro precision/recall/F1, G-mean, IBA, AUCs) are over the classes "
    "present in the evaluated split; a class never predicted has precision 0; n/a = undefined "
    "(no such class in the split, or an empty shot group)."
)

# summary metrics in the order tables show them: (key, label)
SUMMARY_METRICS: tuple[tuple[str, str], ...] = (
    ("accuracy", "accuracy"),
    ("top5_accuracy", "top-5 accuracy"),
    ("balanced_accuracy", "balanced accuracy"),
    ("macro_precision", "macro precision"),
    ("macro_recall", "macro recall"),
    ("macro_f1", "macro F1"),
    ("weighted_precision", "weighted precision"),
    ("weighted_recall", "weighted recall"),
    ("weighted_f1", "weighted F1"),
    ("gmean", "G-mean (multi-class)"),
    ("iba", "IBA (macro)"),
    ("mauc", "MAUC (Hand & Till)"),
    ("macro_auc", "macro AUC (one-vs-rest)"),
    ("micro_auc", "micro AUC (all class columns pooled)"),
    ("ece", "ECE (15 bins)"),
)


# ---------------------------------------------------------------------------------- inputs
def to_numpy(x: Any) -> np.ndarray:
    """A numpy view of a numpy array, torch tensor (any device) or sequence."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if x.is_floating_point() and x.element_size() < 4:  # half / bfloat16: numpy has no bfloat16
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row softmax in float64, stable for large logits."""
    e = logits - logits.max(axis=1, keepdims=True)
    np.exp(e, out=e)
    e /= e.sum(axis=1, keepdims=True)
    return e


def check_inputs(logits: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
    """(N x C float64 logits, N int64 targets), or a one-line LongtailError saying what is wrong."""
    z = to_numpy(logits).astype(np.float64, copy=False)
    y = to_numpy(targets)
    if z.ndim != 2 or z.shape[1] < 2:
        raise LongtailError(f"logits must be an N x C array with C >= 2 classes, got shape {z.shape}")
    if y.ndim != 1 or len(y) != len(z):
        raise LongtailError(f"targets must be a vector of {len(z)} labels (one per logit row), got shape {y.shape}")
    if len(y) == 0:
        raise LongtailError("no samples to evaluate: the split is empty; check the data split sizes")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise LongtailError("targets must be integer class indices, got non-integer values")
        y = y.astype(np.int64)
    bad = (y < 0) | (y >= z.shape[1])
    if bad.any():
        raise LongtailError(
            f"target {int(y[bad][0])} is outside 0..{z.shape[1] - 1} ({int(bad.sum())} such labels; "
            "unlabelled samples (-1) cannot be scored: drop them before evaluating)"
        )
    if not np.isfinite(z).all():
        raise LongtailError("logits contain NaN or inf; the model diverged, lower the learning rate or check the data")
    return z, y.astype(np.int64, copy=False)


def check_counts(train_counts: Any, num_classes: int) -> np.ndarray:
    counts = to_numpy(train_counts).astype(np.int64)
    if counts.shape != (num_classes,):
        raise LongtailError(f"train_counts must have one count per class ({num_classes}), got shape {counts.shape}")
    if (counts < 0).any():
        raise LongtailError("train_counts must be non-negative")
    return counts


# ------------------------------------------------------------------------------ groupings
def shot_groups(train_counts: Sequence[int] | np.ndarray, thresholds: tuple[int, int] = (100, 20)) -> dict[str, list[int]]:
    """Class indices per shot group: many (> hi), medium (lo..hi inclusive), few (< lo).

    The classifier-balancing protocol (ImageNet-LT: hi=100, lo=20). Groups may be empty.
    """
    hi, lo = int(thresholds[0]), int(thresholds[1])
    if lo > hi:
        raise LongtailError(f"shot thresholds must be (many, few) with many >= few, got {tuple(thresholds)}; e.g. (100, 20)")
    counts = np.asarray(train_counts)
    return {
        "many": [int(c) for c in np.flatnonzero(counts > hi)],
        "medium": [int(c) for c in np.flatnonzero((counts >= lo) & (counts <= hi))],
        "few": [int(c) for c in np.flatnonzero(counts < lo)],
    }


DEFAULT_SHOT_THRESHOLDS = (100, 20)


def resolve_shot_thresholds(train_counts: Sequence[int] | np.ndarray, thresholds: tuple[int, int] | str | None) -> tuple[tuple[int, int], str]:
    """The (many >, few <) thresholds to use, and the rule that chose them (the report states it).

    A pair is used as given. ``"auto"`` takes the terciles of the train counts: with C classes
    sorted by count, the smallest C//3 form 'few' and the largest C//3 'many' (ties may move a
    class to 'medium'). ``None`` is (100, 20), unless that leaves a group empty, then the terciles.
    """
    if thresholds is not None and not isinstance(thresholds, str):
        hi, lo = int(thresholds[0]), int(thresholds[1])
        return (hi, lo), f"fixed: many > {hi}, few < {lo} train images"
    if thresholds not in (None, "auto"):
        raise LongtailError(f"shot thresholds must be a (many, few) pair or 'auto', got {thresholds!r}")
    counts = np.sort(np.asarray(train_counts, dtype=np.int64))
    k = len(counts) // 3
    terciles = (int(counts[len(counts) - k - 1]), int(counts[k])) if len(counts) else DEFAULT_SHOT_THRESHOLDS
    if thresholds == "auto":
        return terciles, f"terciles of the train counts (eval.shot_thresholds: auto): many > {terciles[0]}, few < {terciles[1]}"
    empty = [g for g, c in shot_groups(counts, DEFAULT_SHOT_THRESHOLDS).items() if not c]
    if not empty:
        return DEFAULT_SHOT_THRESHOLDS, f"fixed: many > {DEFAULT_SHOT_THRESHOLDS[0]}, few < {DEFAULT_SHOT_THRESHOLDS[1]} train images"
    return terciles, (f"terciles of the train counts (many > {terciles[0]}, few < {terciles[1]}), because the default "
                      f"(100, 20) leaves the {' and '.join(repr(g) for g in empty)} group{'s' if len(empty) > 1 else ''} empty")


# ------------------------------------------------------------------------------------ AUCs
def pairwise_wins(probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``W[i, j]`` = number of (class-i, class-j) sample pairs that column i ranks the right way.

    A pair counts 1 when the class-i sample scores strictly higher on column i, 1/2 on a tie
    (the Mann-Whitney statistic). Rows of classes absent from ``targets`` are 0. Both AUCs
    below derive from W, so one O(C N log n) pass serves 1000-class test sets in seconds
    instead of a Python loop over C^2 pairs.
    """
    num_classes = probs.shape[1]
    columns = np.ascontiguousarray(probs.T)
    wins = np.zeros((num_classes, num_classes))
    for i in np.flatnonzero(np.bincount(targets, minlength=num_classes)):
        scores = columns[i]
        values, counts = np.unique(scores[targets == i], return_counts=True)
        at = np.searchsorted(values, scores)  # first own value >= score
        tie = np.zeros(len(scores))
        hit = at < len(values)
        hit[hit] = values[at[hit]] == scores[hit]
        tie[hit] = counts[at[hit]]
        above = np.concatenate([np.cumsum(counts[::-1])[::-1], [0]])[at] - tie
        # for every sample b: class-i samples scoring above b, plus half the ties
        beaten_by = above + 0.5 * tie
        wins[i] = np.bincount(targets, weights=beaten_by, minlength=num_classes)
    return wins


def one_vs_rest_auc(wins: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Per-class one-vs-rest ROC AUC from :func:`pairwise_wins` (NaN where undefined).

    Equal to ``sklearn.metrics.roc_auc_score(y == c, probs[:, c])`` (tested); undefined when
    class c is absent or is every sample.
    """
    n = support.sum()
    off_diagonal = wins.sum(axis=1) - np.diag(wins)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = off_diagonal / (support * (n - support))
    auc[(support == 0) | (support == n)] = np.nan
    return auc


def micro_auc(probs: np.ndarray, targets: np.ndarray) -> float:
    """ROC-AUC of every (sample, class) pair pooled: one-hot targets against the probabilities.

    Equal to ``roc_auc_score(label_binarize(y, classes=range(C)), probs, average='micro')`` (tested);
    always defined for C >= 2 (each sample gives one positive and C - 1 negatives).
    """
    onehot = np.zeros(probs.shape, dtype=np.int8)
    onehot[np.arange(len(targets)), targets] = 1
    return float(roc_auc_score(onehot.ravel(), probs.ravel()))


def hand_till_mauc(wins: np.ndarray, support: np.ndarray) -> float | None:
    """Hand & Till (2001) multi-class AUC over the classes present in the targets.

    ``A(i|j) = W[i, j] / (n_i n_j)``, the probability that a class-i sample outscores a class-j
    sample on column i; MAUC = mean of ``A(i|j)`` over ordered pairs of present classes (the
    same as the mean over unordered pairs of the symmetrised A). Equal to
    ``roc_auc_score(multi_class='ovo')`` when every class is present (tested), and still
    defined when some are absent. None with fewer than two classes present.
    """
    present = np.flatnonzero(support)
    k = len(present)
    if k < 2:
        return None
    sub = wins[np.ix_(present, present)] / np.outer(support[present], support[present])
    return float((sub.sum() - np.trace(sub)) / (k * (k - 1)))


def top_k_accuracy(probs: np.ndarray, targets: np.ndarray, k: int) -> float:
    """Fraction of samples whose true class has fewer than k classes scoring strictly higher.

    Matches ``sklearn.metrics.top_k_accuracy_score`` except on exact ties (which it breaks by
    sort order); O(N C) without sorting the N x C matrix.
    """
    true_score = probs[np.arange(len(targets)), targets][:, None]
    return float(np.mean((probs > true_score).sum(axis=1) < k))


# ------------------------------------------------------------------------------ calibration
def reliability(probs: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS) -> dict[str, Any]:
    """Equal-width confidence bins on the max probability: counts, accuracy, confidence, ECE.

    Bin b holds confidences in ``(b/bins, (b+1)/bins]`` (the first bin also holds 0).
    ECE = sum_b |B_b|/N * |acc(B_b) - conf(B_b)| (Guo et al. 2017). Empty bins have None.
    """
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == targets).astype(np.float64)
    idx = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=bins)
    ece = float(np.sum(np.abs(acc_sum - conf_sum)) / len(targets))
    return {
        "edges": [b / bins for b in range(bins + 1)],
        "count": [int(c) for c in count],
        "accuracy": [float(a / c) if c else None for a, c in zip(acc_sum, count)],
        "confidence": [float(s / c) if c else None for s, c in zip(conf_sum, count)],
        "ece": ece,
    }


# --------------------------------------------------------------------------------- compute
def _opt(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _mean(values: np.ndarray) -> float | None:
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else None


def compute(
    logits: Any,
    targets: Any,
    train_counts: Any = None,
    class_names: Sequence[str] | None = None,
    shot_thresholds: tuple[int, int] | str | None = (100, 20),
    majority_threshold: int | None = None,
    isic2017: bool = False,
    inputs: str = "logits",
) -> dict[str, Any]:
    """All metrics of one split from its logits (N x C) and integer targets (N).

    Probabilities are the row softmax of ``logits``; predictions their argmax. With
    ``inputs='probabilities'`` the rows are scores in [0, 1] used as they are (MBIT's sigmoid
    scores with an UNK column, which do not sum to 1: see :func:`longtail.submission.scores_with_unk`). ``train_counts``
    enables the shot-group table (``shot_thresholds`` = (many >, few <), ``'auto'`` or None: see
    :func:`resolve_shot_thresholds`; ``shot_rule`` says which were used) and, with
    ``majority_threshold``, the CDB majority/minority table. See the module docstring for how
    never-predicted and absent classes are handled.
    """
    z, y = check_inputs(logits, targets)
    n, num_classes = z.shape
    if majority_threshold is not None and train_counts is None:
        raise LongtailError("majority_threshold needs train_counts (the split into majority/minority is by training count)")
    names = _class_names(class_names, num_classes)
    counts = check_counts(train_counts, num_classes) if train_counts is not None else None
    if inputs not in ("logits", "probabilities"):
        raise LongtailError(f"inputs must be 'logits' or 'probabilities', got '{inputs}'")
    if inputs == "probabilities" and ((z < 0) | (z > 1)).any():
        raise LongtailError("inputs='probabilities' needs scores in [0, 1]; pass logits with inputs='logits'")
    probs = softmax(z) if inputs == "logits" else z
    pred = probs.argmax(axis=1)
    labels = np.arange(num_classes)
    support = np.bincount(y, minlength=num_classes)
    present = np.flatnonzero(support)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", UserWarning)  # "y_pred contains classes not in y_true"
        precision, recall, f1, _ = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
        _, specificity, _ = sensitivity_specificity_support(y, pred, labels=labels)
        cm = confusion_matrix(y, pred, labels=labels)
        result: dict[str, Any] = {"num_samples": int(n), "num_classes": int(num_classes)}
        result["accuracy"] = float(accuracy_score(y, pred))
        if num_classes > 5:
            result["top5_accuracy"] = top_k_accuracy(probs, y, 5)
        result["balanced_accuracy"] = float(balanced_accuracy_score(y, pred))
        result["macro_precision"] = float(precision[present].mean())
        result["macro_recall"] = float(recall[present].mean())
        result["macro_f1"] = float(f1[present].mean())
        w_precision, w_recall, w_f1, _ = precision_recall_fscore_support(y, pred, labels=labels, average="weighted", zero_division=0)
        result["weighted_precision"] = float(w_precision)
        result["weighted_recall"] = float(w_recall)
        result["weighted_f1"] = float(w_f1)

    recall = recall.astype(np.float64)
    absent = support == 0
    recall[absent] = np.nan
    f1 = f1.astype(np.float64)
    f1[absent] = np.nan
    gmean_c = np.sqrt(recall * specificity)
    iba_c = (1 + IBA_ALPHA * (recall - specificity)) * gmean_c**2
    corrected = np.where(recall[present] == 0, GMEAN_CORRECTION, recall[present])
    result["gmean"] = float(np.exp(np.mean(np.log(corrected))))
    result["iba"] = _mean(iba_c)
    wins = pairwise_wins(probs, y)
    result["mauc"] = hand_till_mauc(wins, support)
    auc = one_vs_rest_auc(wins, support)
    result["macro_auc"] = _mean(auc)
    result["micro_auc"] = micro_auc(probs, y)
    calib = reliability(probs, y)
    result["ece"] = calib["ece"]

    result["per_class"] = [
        {
            "index": int(c),
            "name": names[c],
            "support": int(support[c]),
            "train_count": int(counts[c]) if counts is not None else None,
            "predicted": int(cm[:, c].sum()),
            "precision": float(precision[c]),
            "recall": _opt(recall[c]),
            "specificity": _opt(specificity[c]),
            "f1": _opt(f1[c]),
            "gmean": _opt(gmean_c[c]),
            "iba": _opt(iba_c[c]),
            "auc": _opt(auc[c]),
        }
        for c in range(num_classes)
    ]
    result["confusion_matrix"] = cm.tolist()
    result["reliability"] = {k: v for k, v in calib.items() if k != "ece"}
    if counts is not None:
        thresholds, result["shot_rule"] = resolve_shot_thresholds(counts, shot_thresholds)
        result["shot_thresholds"] = list(thresholds)
        result["shots"] = _shots(recall, counts, support, thresholds)
        if majority_threshold is not None:
            result["majority_minority"] = _majority_minority(precision, recall, counts, support, majority_threshold)
    if isic2017:
        result["isic2017"] = _isic2017(y, pred, recall, precision, auc, num_classes)
    return result


def _class_names(class_names: Sequence[str] | None, num_classes: int) -> list[str]:
    if class_names is None:
        return [str(c) for c in range(num_classes)]
    names = [str(c) for c in class_names]
    if len(names) != num_classes:
        raise LongtailError(f"{len(names)} class names given for {num_classes} logit columns; pass one name per class")
    return names


def _shots(recall: np.ndarray, counts: np.ndarray, support: np.ndarray, thresholds: tuple[int, int]) -> dict[str, Any]:
    """Mean per-class recall (= class-mean accuracy) per shot group; None when nothing to average."""
    out: dict[str, Any] = {}
    for group, classes in shot_groups(counts, thresholds).items():
        idx = np.asarray(classes, dtype=np.int64)
        tested = idx[support[idx] > 0] if len(idx) else idx
        out[group] = {
            "accuracy": _mean(recall[tested]) if len(tested) else None,
            "n_classes": int(len(idx)),
            "n_test_classes": int(len(tested)),
            "n_test_samples": int(support[idx].sum()) if len(idx) else 0,
        }
    return out


def _majority_minority(precision: np.ndarray, recall: np.ndarray, counts: np.ndarray, support: np.ndarray, threshold: int) -> dict[str, Any]:
    """CDB EGTEA protocol: mean precision / recall over classes with train count > threshold vs the rest.

    Like every macro here, the means run over the group's classes present in the split.
    """
    out: dict[str, Any] = {"threshold": int(threshold)}
    for group, mask in (("majority", counts > threshold), ("minority", counts <= threshold)):
        idx = np.flatnonzero(mask)
        tested = idx[support[idx] > 0]
        out[group] = {
            "precision": float(precision[tested].mean()) if len(tested) else None,
            "recall": float(recall[tested].mean()) if len(tested) else None,
            "n_classes": int(len(idx)),
        }
    return out


def _isic2017(y: np.ndarray, pred: np.ndarray, recall: np.ndarray, precision: np.ndarray, auc: np.ndarray, num_classes: int) -> dict[str, Any]:
    """ISIC 2017 protocol (MBIT valid.py): means over MEL (class 0) and SK (class 1) only."""
    if num_classes < 2:
        raise LongtailError("isic2017 metrics need classes 0 = melanoma and 1 = seborrheic keratosis")
    binary_acc = [float(np.mean((pred == c) == (y == c))) for c in (0, 1)]
    return {
        "auc": _mean(auc[:2]) if not np.isnan(auc[:2]).all() else None,
        "auc_mel": _opt(auc[0]),
        "auc_sk": _opt(auc[1]),
        "balanced_accuracy": _mean(recall[:2]),
        "accuracy": float(np.mean(binary_acc)),
        "accuracy_mel": binary_acc[0],
        "accuracy_sk": binary_acc[1],
        "precision": float(np.mean(precision[:2])),
    }


# --------------------------------------------------------------------------------- display
def fmt(value: Any, digits: int = 4) -> str:
    """A metric for display: 'n/a' for None/NaN, fixed digits otherwise."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    return f"{float(value):.{digits}f}"


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, formatted value) for every summary metric present in ``result``."""
    return [(label, fmt(result[key])) for key, label in SUMMARY_METRICS if key in result]


def shot_rows(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(group, rule, classes, accuracy) rows of the shot table, empty when no train counts."""
    shots = result.get("shots")
    if not shots:
        return []
    hi, lo = result.get("shot_thresholds", (100, 20))
    rules = {"many": f"> {hi}", "medium": f"{lo}..{hi}", "few": f"< {lo}"}
    return [
        (g, rules[g], f"{shots[g]['n_classes']} ({shots[g]['n_test_classes']} in split)", fmt(shots[g]["accuracy"]))
        for g in SHOT_GROUPS
    ]


PER_CLASS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("support", "support"),
    ("train_count", "train"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("specificity", "specificity"),
    ("f1", "F1"),
    ("auc", "AUC"),
)


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain aligned table: first column left-aligned, the rest right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def format_table(result: dict[str, Any], class_names: Sequence[str] | None = None, per_class: bool = True) -> str:
    """Per-class table (unless ``per_class=False``), summary metrics and shot groups as plain text."""
    parts = []
    if per_class:
        rows_in = result["per_class"]
        names = list(class_names) if class_names is not None and len(class_names) == len(rows_in) else [p["name"] for p in rows_in]
        rows = [[names[i], *(fmt(p[k]) for k, _ in PER_CLASS_COLUMNS)] for i, p in enumerate(rows_in)]
        parts.append(text_table(["class", *(label for _, label in PER_CLASS_COLUMNS)], rows))
    parts.append(text_table(["metric", "value"], summary_rows(result)))
    parts += [text_table(header, rows) for header, rows in group_tables(result)]
    return "\n\n".join(parts) + "\n"


def group_tables(result: dict[str, Any]) -> list[tuple[list[str], list[list[str]]]]:
    """(header, rows) of the optional group tables present in ``result``: shots, majority/minority, ISIC 2017."""
    tables = []
    shots = shot_rows(result)
    if shots:
        tables.append((["shots", "train count", "classes", "accuracy"], [list(r) for r in shots]))
    mm = result.get("majority_minority")
    if mm:
        rows = [[f"{g} ({'>' if g == 'majority' else '<='} {mm['threshold']})", str(mm[g]["n_classes"]), fmt(mm[g]["precision"]), fmt(mm[g]["recall"])] for g in ("majority", "minority")]
        tables.append((["group", "classes", "precision", "recall"], rows))
    isic = result.get("isic2017")
    if isic:
        tables.append((["ISIC 2017 (MEL + SK)", "value"], [[k, fmt(v)] for k, v in isic.items()]))
    return tables


SPBL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("precision", "precision"),
    ("recall", "recall"),
    ("specificity", "specificity"),
    ("f1", "F1"),
    ("gmean", "G-mean"),
    ("iba", "IBA"),
    ("support", "support"),
)


def spbl_tables(result: dict[str, Any]) -> list[tuple[list[str], list[list[str]]]]:
    """SPBL's metric table (its embedded copy of imbalanced-learn's ``classification_report_imbalanced``):
    per class precision, recall, specificity, F1, G-mean, IBA and support, then the macro row (over the
    classes present) and the support-weighted row; then the figures the SPBL paper reports (macro
    precision / recall / F1, multi-class G-mean, MAUC, accuracy)."""
    per_class = result["per_class"]
    present = [p for p in per_class if p["support"] > 0]
    total = sum(p["support"] for p in present)
    rows = [[str(p["name"]), *(fmt(p.get(k)) for k, _ in SPBL_COLUMNS)] for p in per_class]
    stats = [k for k, _ in SPBL_COLUMNS if k != "support"]
    macro = [float(np.mean([p[k] for p in present])) if present else None for k in stats]
    weighted = [float(sum(p[k] * p["support"] for p in present) / total) if total else None for k in stats]
    rows.append(["macro", *(fmt(v) for v in macro), str(total)])
    rows.append(["weighted", *(fmt(v) for v in weighted), str(total)])
    paper = [
        ["precision (macro)", fmt(result.get("macro_precision"))],
        ["recall (macro)", fmt(result.get("macro_recall"))],
        ["F1 (macro)", fmt(result.get("macro_f1"))],
        ["G-mean (multi-class, zero recall -> 0.001)", fmt(result.get("gmean"))],
        ["MAUC (Hand & Till)", fmt(result.get("mauc"))],
        ["accuracy", fmt(result.get("accuracy"))],
    ]
    return [(["class", *(label for _, label in SPBL_COLUMNS)], rows), (["SPBL summary", "value"], paper)]
