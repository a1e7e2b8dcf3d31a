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
)

from ..core.errors import LongtailError
from .calibration import reliability
from .inputs import check_counts, check_inputs, softmax
from .ranking import hand_till_mauc, micro_auc, one_vs_rest_auc, pairwise_wins, top_k_accuracy
from .shots import resolve_shot_thresholds, shot_groups

GMEAN_CORRECTION = 0.001  # SPBL / imbalanced-learn: a zero recall counts as 0.001 in the product
IBA_ALPHA = 0.1

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
    scores with an UNK column, which do not sum to 1: see :func:`longtail.evaluation.submission.scores_with_unk`). ``train_counts``
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
