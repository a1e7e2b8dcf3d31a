"""What the people who decide whether to ship ask of stored predictions.

* one-vs-rest ROC and precision-recall curves per class, with AUC and average precision
  (scikit-learn's ``roc_curve``, ``roc_auc_score``, ``precision_recall_curve``,
  ``average_precision_score``);
* operating points: for a positive class or set of classes (``eval.positive``), the sensitivity at
  fixed specificities, each threshold chosen on validation and read, unchanged, on test;
* metrics under a deployment prior (``eval.target_prior``): accuracy, PPV and NPV re-weighted from
  the test split's class frequencies to the ones expected where the model is used.

The prior re-weighting assumes label shift: ``P(prediction | true class)`` is what the test split
measured, and only the class frequencies change. Then accuracy = sum_k pi_k recall_k and, for a
positive set S, PPV = sum_{k in S} pi_k P(pred in S | k) / sum_k pi_k P(pred in S | k). A class
with no test image has no measured row, so metrics under a prior that gives it weight are n/a.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.errors import ConfigError, did_you_mean
from ..metrics import softmax

SPECIFICITIES = (0.80, 0.90, 0.95)


# ------------------------------------------------------------------------------ config checks
def positive_indices(positive: Sequence[str] | None, class_names: Sequence[str]) -> list[int]:
    """Class indices of ``eval.positive`` (names; several = their union); a name not in the class list is an error."""
    if not positive:
        return []
    names = [str(n) for n in class_names]
    out = []
    for p in positive:
        if str(p) not in names:
            raise ConfigError(f"eval.positive: '{p}' is not a class{did_you_mean(str(p), names)}; classes: {', '.join(names)}")
        out.append(names.index(str(p)))
    return sorted(set(out))


def check_target_prior(prior: Sequence[float] | None, class_names: Sequence[str]) -> np.ndarray | None:
    """``eval.target_prior`` as a vector, after checking it has one frequency per class (the sum is checked by the config)."""
    if prior is None:
        return None
    p = np.asarray(prior, dtype=np.float64)
    if len(p) != len(class_names):
        raise ConfigError(
            f"eval.target_prior has {len(p)} values but the data has {len(class_names)} classes "
            f"({', '.join(map(str, class_names))}); give one frequency per class, in that order"
        )
    return p


# ------------------------------------------------------------------------- one-vs-rest curves
def one_vs_rest(probs: np.ndarray, targets: np.ndarray, class_names: Sequence[str], with_curves: bool = False) -> list[dict[str, Any]]:
    """Per class: AUC and AP of ``probs[:, c]`` for "class c vs the rest" (None when the split lacks
    positives or negatives of c); with ``with_curves`` also the ROC and PR curve points."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    out = []
    for c, name in enumerate(class_names):
        y = (targets == c).astype(int)
        entry: dict[str, Any] = {"name": str(name), "positives": int(y.sum()), "auc": None, "ap": None}
        if 0 < y.sum() < len(y):
            entry["auc"] = float(roc_auc_score(y, probs[:, c]))
            entry["ap"] = float(average_precision_score(y, probs[:, c]))
            if with_curves:
                fpr, tpr, _ = roc_curve(y, probs[:, c])
                precision, recall, _ = precision_recall_curve(y, probs[:, c])
                entry.update(fpr=fpr, tpr=tpr, precision=precision, recall=recall)
        out.append(entry)
    return out


# ----------------------------------------------------------------------------- operating points
def threshold_for_specificity(scores: np.ndarray, positive: np.ndarray, specificity: float) -> float:
    """The threshold (predict positive when ``score >= t``) with the highest sensitivity whose specificity on
    these scores is at least ``specificity``; ties go to the higher specificity."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(positive.astype(int), scores)
    ok = np.flatnonzero(1.0 - fpr >= specificity - 1e-12)  # fpr rises along the curve: ok is a prefix
    best = ok[np.argmax(tpr[ok])]  # the first index with the highest tpr: the lowest fpr among equals
    return float(thresholds[best])


def sensitivity_specificity(scores: np.ndarray, positive: np.ndarray, threshold: float) -> tuple[float | None, float | None]:
    called = scores >= threshold
    sens = float(called[positive].mean()) if positive.any() else None
    spec = float((~called[~positive]).mean()) if (~positive).any() else None
    return sens, spec


def operating_points(val_probs: np.ndarray, val_targets: np.ndarray, test_probs: np.ndarray | None, test_targets: np.ndarray | None,
                     positive: Sequence[int], specificities: Sequence[float] = SPECIFICITIES) -> list[dict[str, Any]]:
    """Per target specificity: the threshold on P(positive set) chosen on validation, its validation
    sensitivity/specificity, and the sensitivity/specificity the same threshold gives on test."""
    idx = list(positive)
    val_scores = val_probs[:, idx].sum(axis=1)
    val_pos = np.isin(val_targets, idx)
    if val_pos.all() or not val_pos.any():
        raise ConfigError("eval.positive: the validation split needs images of the positive and of the other classes to choose thresholds; change eval.positive or the split")
    rows = []
    for spec in specificities:
        t = threshold_for_specificity(val_scores, val_pos, spec)
        row: dict[str, Any] = {"target_specificity": float(spec), "threshold": t}
        row["val_sensitivity"], row["val_specificity"] = sensitivity_specificity(val_scores, val_pos, t)
        if test_probs is not None and test_targets is not None:
            row["test_sensitivity"], row["test_specificity"] = sensitivity_specificity(test_probs[:, idx].sum(axis=1), np.isin(test_targets, idx), t)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- deployment prior
def conditional_rates(pred: np.ndarray, targets: np.ndarray, num_classes: int) -> np.ndarray:
    """R[k, j] = P(prediction j | true class k) on these predictions; NaN rows for absent classes."""
    counts = np.zeros((num_classes, num_classes))
    np.add.at(counts, (targets, pred), 1)
    support = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, support, out=np.full_like(counts, np.nan), where=support > 0)


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den > 0 and np.isfinite(num) and np.isfinite(den) else None


def prior_metrics(rates: np.ndarray, prior: np.ndarray, positive: Sequence[int] = ()) -> dict[str, Any]:
    """Accuracy, and PPV / NPV per class (and for the positive set), under class frequencies ``prior``."""
    prior = np.asarray(prior, dtype=np.float64) / np.sum(prior)
    weighted = prior > 0
    if np.isnan(rates[weighted]).any():  # a class the prior weighs was never seen on test
        nan = None
        per_class = [{"ppv": nan, "npv": nan} for _ in prior]
        return {"accuracy": nan, "per_class": per_class, "positive": {"sensitivity": nan, "ppv": nan, "npv": nan} if positive else None}
    r = np.where(np.isnan(rates), 0.0, rates)
    out: dict[str, Any] = {"accuracy": float(np.sum(prior * np.diag(r)))}
    out["per_class"] = [_set_rates(r, prior, [c]) for c in range(len(prior))]
    out["positive"] = _set_rates(r, prior, list(positive)) if positive else None
    for entry in out["per_class"]:
        entry.pop("sensitivity")
    return out


def _set_rates(r: np.ndarray, prior: np.ndarray, members: list[int]) -> dict[str, float | None]:
    """Sensitivity, PPV and NPV of "prediction in S" for the set S = ``members``."""
    called = r[:, members].sum(axis=1)  # P(pred in S | k)
    in_s = np.zeros(len(prior), dtype=bool)
    in_s[members] = True
    return {
        "sensitivity": _ratio(np.sum(prior[in_s] * called[in_s]), np.sum(prior[in_s])),
        "ppv": _ratio(np.sum(prior[in_s] * called[in_s]), np.sum(prior * called)),
        "npv": _ratio(np.sum(prior[~in_s] * (1 - called[~in_s])), np.sum(prior * (1 - called))),
    }


def prior_accuracy(logits: np.ndarray, targets: np.ndarray, prior: np.ndarray) -> float | None:
    """Accuracy re-weighted to ``prior`` (what post-hoc adjustment toward that prior is chosen by)."""
    pred = np.asarray(logits).argmax(axis=1)
    return prior_metrics(conditional_rates(pred, np.asarray(targets), len(prior)), prior)["accuracy"]


# ------------------------------------------------------------------------------------ summary
def summarise(val_logits: np.ndarray, val_targets: np.ndarray, test_logits: np.ndarray | None, test_targets: np.ndarray | None,
              class_names: Sequence[str], positive: Sequence[str] | None = None, target_prior: Sequence[float] | None = None,
              adjusted_test_logits: np.ndarray | None = None, adjusted_label: str | None = None) -> dict[str, Any]:
    """The ``decision`` block of results.json: AUC/AP per class, operating points, metrics under the
    test split's own prior and under ``target_prior`` (and, when given, after the post-hoc adjustment)."""
    names = [str(n) for n in class_names]
    pos = positive_indices(positive, names)
    prior = check_target_prior(target_prior, names)
    if test_logits is not None and test_targets is not None:  # unlabelled test rows (a withheld test set) carry no evidence
        labelled = np.asarray(test_targets) >= 0
        test_logits, test_targets = np.asarray(test_logits)[labelled], np.asarray(test_targets)[labelled]
        if adjusted_test_logits is not None:
            adjusted_test_logits = np.asarray(adjusted_test_logits)[labelled]
    on_test = test_logits is not None and test_targets is not None and len(test_targets) > 0
    split = "test" if on_test else "val"
    logits, targets = (test_logits, test_targets) if on_test else (val_logits, val_targets)
    probs = softmax(np.asarray(logits, dtype=np.float64))
    out: dict[str, Any] = {"split": split, "one_vs_rest": one_vs_rest(probs, targets, names)}
    if pos:
        out["positive"] = [names[i] for i in pos]
        out["operating_points"] = operating_points(softmax(np.asarray(val_logits, dtype=np.float64)), val_targets,
                                                   probs if on_test else None, targets if on_test else None, pos)
    if prior is not None:
        rates = conditional_rates(probs.argmax(axis=1), targets, len(names))
        own = np.bincount(targets, minlength=len(names)).astype(np.float64)
        columns = {f"{split} split's prior": prior_metrics(rates, own, pos), "target prior": prior_metrics(rates, prior, pos)}
        if adjusted_test_logits is not None and on_test:
            adjusted = conditional_rates(np.asarray(adjusted_test_logits).argmax(axis=1), targets, len(names))
            columns[adjusted_label or "target prior, adjusted"] = prior_metrics(adjusted, prior, pos)
        out["target_prior"] = {"prior": [float(v) for v in prior], f"{split}_prior": [float(v) for v in own / own.sum()], "columns": columns}
    return out
