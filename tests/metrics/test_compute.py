"""longtail.metrics against scikit-learn / imbalanced-learn, hand-computed values and edge cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from imblearn.metrics import (
    classification_report_imbalanced,
    geometric_mean_score,
    make_index_balanced_accuracy,
    sensitivity_specificity_support,
)
from scipy.stats import rankdata
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
    top_k_accuracy_score,
)
from sklearn.preprocessing import label_binarize

from longtail import metrics as M
from longtail.core.errors import LongtailError

from .common import noisy_logits


def hand_till(probs: np.ndarray, y: np.ndarray) -> float:
    """Direct Hand & Till (2001): rank sums per ordered pair of present classes."""
    present = np.unique(y)
    total, pairs = 0.0, 0
    for i in present:
        for j in present:
            if i == j:
                continue
            mask = (y == i) | (y == j)
            ranks = rankdata(probs[mask, i])
            ni, nj = (y == i).sum(), (y == j).sum()
            s_i = ranks[y[mask] == i].sum()
            total += (s_i - ni * (ni + 1) / 2) / (ni * nj)
            pairs += 1
    return total / pairs


def check_against_libraries(z: np.ndarray, y: np.ndarray) -> None:
    num_classes = z.shape[1]
    r = M.compute(z, y)
    p = M.softmax(z.copy())
    pred = p.argmax(1)
    present = np.unique(y)
    labels = np.arange(num_classes)
    assert r["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert r["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    prec, rec, f1, _ = precision_recall_fscore_support(y, pred, labels=present, average="macro", zero_division=0)
    assert r["macro_precision"] == pytest.approx(prec)
    assert r["macro_recall"] == pytest.approx(rec)
    assert r["macro_f1"] == pytest.approx(f1)
    assert r["macro_recall"] == pytest.approx(r["balanced_accuracy"])
    assert r["weighted_f1"] == pytest.approx(f1_score(y, pred, labels=labels, average="weighted", zero_division=0))
    w_prec, w_rec, _, _ = precision_recall_fscore_support(y, pred, labels=labels, average="weighted", zero_division=0)
    assert r["weighted_precision"] == pytest.approx(w_prec)
    assert r["weighted_recall"] == pytest.approx(w_rec) and r["weighted_recall"] == pytest.approx(r["accuracy"])
    binarized = label_binarize(y, classes=labels) if num_classes > 2 else np.eye(2, dtype=int)[y]  # sklearn gives 1 column for 2 classes
    assert r["micro_auc"] == pytest.approx(roc_auc_score(binarized, p, average="micro"))
    assert r["gmean"] == pytest.approx(geometric_mean_score(y, pred, labels=present, average="multiclass", correction=0.001))
    iba = make_index_balanced_accuracy(alpha=0.1, squared=True)(geometric_mean_score)
    assert r["iba"] == pytest.approx(np.mean(iba(y, pred, labels=present, average=None)))
    report = classification_report_imbalanced(y, pred, labels=present, output_dict=True, zero_division=0)
    for c in present:
        row, ref = r["per_class"][c], report[str(c)]
        assert row["iba"] == pytest.approx(ref["iba"])
        assert row["gmean"] == pytest.approx(ref["geo"])
        assert row["specificity"] == pytest.approx(ref["spe"])
        assert row["recall"] == pytest.approx(ref["rec"])
        assert row["precision"] == pytest.approx(ref["pre"])
        assert row["f1"] == pytest.approx(ref["f1"])
    _, spe, sup = sensitivity_specificity_support(y, pred, labels=labels)
    assert [row["specificity"] for row in r["per_class"]] == pytest.approx(spe)
    assert [row["support"] for row in r["per_class"]] == list(sup)
    assert r["confusion_matrix"] == confusion_matrix(y, pred, labels=labels).tolist()
    assert r["mauc"] == pytest.approx(hand_till(p, y))
    if len(present) == num_classes > 2:  # sklearn's ovo needs every class present (and C > 2)
        assert r["mauc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovo", labels=labels))
    aucs = [roc_auc_score(y == c, p[:, c]) for c in present]
    assert [r["per_class"][c]["auc"] for c in present] == pytest.approx(aucs)
    assert r["macro_auc"] == pytest.approx(np.mean(aucs))
    if num_classes > 5:
        assert r["top5_accuracy"] == pytest.approx(top_k_accuracy_score(y, p, k=5, labels=labels))
    else:
        assert "top5_accuracy" not in r


@pytest.mark.parametrize("num_classes,n,seed", [(2, 40, 0), (3, 90, 1), (7, 300, 2), (12, 500, 3)])
def test_random_inputs_match_libraries(num_classes: int, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, n)
    check_against_libraries(noisy_logits(rng, y, num_classes), y)


def test_tied_scores_match_sklearn_auc() -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 4, 120)
    z = np.round(noisy_logits(rng, y, 4), 0)  # many exactly equal probabilities
    check_against_libraries(z, y)


def test_class_never_predicted_has_precision_zero_and_counts_in_the_macro() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 4, 200)
    z = noisy_logits(rng, y, 4, signal=2.0)
    z[:, 3] = -50.0  # class 3 is never predicted
    r = M.compute(z, y)
    row = r["per_class"][3]
    assert row["predicted"] == 0 and row["precision"] == 0.0 and row["recall"] == 0.0 and row["f1"] == 0.0
    assert r["macro_precision"] == pytest.approx(np.mean([p["precision"] for p in r["per_class"]]))
    assert r["gmean"] == pytest.approx(np.prod([max(p["recall"], 0.001) for p in r["per_class"]]) ** 0.25)
    check_against_libraries(z, y)


def test_class_absent_from_targets_is_skipped_by_every_macro() -> None:
    rng = np.random.default_rng(6)
    y = rng.integers(0, 5, 200)
    y[y == 2] = 0  # class 2 absent from the targets ...
    z = noisy_logits(rng, y, 5)
    z[:, 2] = -50.0
    z[:7, 2] = 10.0  # ... but predicted for 7 samples
    r = M.compute(z, y, train_counts=[50, 40, 30, 20, 10])
    row = r["per_class"][2]
    assert row["support"] == 0 and row["predicted"] == 7
    assert row["recall"] is None and row["f1"] is None and row["auc"] is None and row["gmean"] is None
    assert row["precision"] == 0.0
    present = [0, 1, 3, 4]
    assert r["macro_recall"] == pytest.approx(np.mean([r["per_class"][c]["recall"] for c in present]))
    assert r["macro_f1"] == pytest.approx(np.mean([r["per_class"][c]["f1"] for c in present]))
    assert r["macro_precision"] == pytest.approx(np.mean([r["per_class"][c]["precision"] for c in present]))
    assert r["macro_auc"] == pytest.approx(np.mean([r["per_class"][c]["auc"] for c in present]))
    assert r["shots"]["medium"]["n_classes"] == 4 and r["shots"]["medium"]["n_test_classes"] == 3
    assert r["shots"]["many"]["accuracy"] is None
    check_against_libraries(z, y)


def test_two_classes_auc_is_the_binary_auc() -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 80)
    z = noisy_logits(rng, y, 2)
    r = M.compute(z, y)
    binary = roc_auc_score(y, M.softmax(z.copy())[:, 1])
    assert r["mauc"] == pytest.approx(binary)
    assert r["macro_auc"] == pytest.approx(binary)
    assert r["per_class"][0]["auc"] == pytest.approx(binary)


def test_weighted_rows_and_micro_auc_by_hand() -> None:
    # probabilities (0.45, 0.55) for a class-0 sample and (0.4, 0.6) for a class-1 sample: pooled, the
    # positives 0.45 and 0.6 against the negatives 0.55 and 0.4 win 3 of 4 pairs -> micro AUC 0.75
    z = np.log(np.array([[0.45, 0.55], [0.4, 0.6]]))
    r = M.compute(z, np.array([0, 1]))
    assert r["micro_auc"] == pytest.approx(0.75)
    # both predicted class 1: precision (0, 1/2) and recall (0, 1), each support 1 -> weighted 0.25 and 0.5
    assert r["weighted_precision"] == pytest.approx(0.25) and r["weighted_recall"] == pytest.approx(0.5)
    # 3 samples of class 0 and 1 of class 1, all predicted 0: precision (3/4, 0) weighted by (3, 1) -> 9/16
    r = M.compute(np.array([[2.0, 0.0]] * 4), np.array([0, 0, 0, 1]))
    assert r["weighted_precision"] == pytest.approx(9 / 16) and r["weighted_recall"] == pytest.approx(0.75)


def test_perfect_predictions() -> None:
    y = np.array([0, 1, 2, 2, 1, 0, 3, 3, 3])
    z = np.eye(4)[y] * 20.0
    r = M.compute(z, y)
    for key in ("accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_precision",
                "weighted_recall", "weighted_f1", "gmean", "mauc", "macro_auc", "micro_auc"):
        assert r[key] == pytest.approx(1.0), key
    assert r["iba"] == pytest.approx(1.0)  # sen = spe = 1
    confidence = 1 / (1 + 3 * math.exp(-20))
    assert r["ece"] == pytest.approx(1 - confidence)


def test_gmean_replaces_zero_recall_by_0001() -> None:
    # recalls: class 0 -> 1, class 1 -> 0, class 2 -> 1/2
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 0, 0, 2, 2, 0])
    r = M.compute(np.eye(3)[pred] * 5, y)
    assert r["gmean"] == pytest.approx((1 * 0.001 * 0.5) ** (1 / 3))
    assert r["balanced_accuracy"] == pytest.approx(0.5)


def test_ece_on_a_hand_made_example() -> None:
    # binary logits [log p, log(1 - p)] give max probability p exactly
    def row(p: float, predict: int) -> list[float]:
        probs = [p, 1 - p] if predict == 0 else [1 - p, p]
        return [math.log(v) for v in probs]

    # 4 samples at confidence 0.9 (3 right, 1 wrong) and 2 at confidence 0.6 (both right)
    z = np.array([row(0.9, 0)] * 4 + [row(0.6, 1)] * 2)
    y = np.array([0, 0, 0, 1, 1, 1])
    r = M.compute(z, y)
    expected = 4 / 6 * abs(0.75 - 0.9) + 2 / 6 * abs(1.0 - 0.6)
    assert r["ece"] == pytest.approx(expected)
    rel = r["reliability"]
    assert sum(rel["count"]) == 6
    assert rel["count"][13] == 4 and rel["accuracy"][13] == pytest.approx(0.75)  # (13/15, 14/15] holds 0.9
    assert rel["count"][8] == 2 and rel["confidence"][8] == pytest.approx(0.6)  # (8/15, 9/15] holds 0.6
    assert rel["accuracy"][0] is None


def test_top5_against_sklearn_and_by_hand() -> None:
    z = np.tile(np.arange(8, dtype=float), (3, 1))  # class 7 best, class 0 worst
    y = np.array([7, 3, 2])  # ranks 1, 5, 6
    assert M.compute(z, y)["top5_accuracy"] == pytest.approx(2 / 3)


def test_shot_groups_thresholds_and_empty_group() -> None:
    counts = [500, 101, 100, 20, 19, 3]
    assert M.shot_groups(counts, (100, 20)) == {"many": [0, 1], "medium": [2, 3], "few": [4, 5]}
    no_few = [500, 300, 50, 40]
    assert M.shot_groups(no_few) == {"many": [0, 1], "medium": [2, 3], "few": []}
    y = np.array([0, 0, 1, 2, 2, 3])
    pred = np.array([0, 1, 1, 2, 0, 0])  # recalls 1/2, 1, 1/2, 0
    r = M.compute(np.eye(4)[pred] * 5, y, train_counts=no_few)
    assert r["shots"]["many"] == {"accuracy": pytest.approx(0.75), "n_classes": 2, "n_test_classes": 2, "n_test_samples": 3}
    assert r["shots"]["medium"]["accuracy"] == pytest.approx(0.25)
    assert r["shots"]["few"] == {"accuracy": None, "n_classes": 0, "n_test_classes": 0, "n_test_samples": 0}
    table = M.format_table(r)
    few_line = next(line for line in table.splitlines() if line.startswith("few"))
    assert few_line.split()[-1] == "n/a"
    json.dumps(r, allow_nan=False)  # no NaN anywhere


def test_shot_thresholds_in_wrong_order_are_rejected() -> None:
    with pytest.raises(LongtailError, match="many >= few"):
        M.shot_groups([10, 5], (20, 100))


def test_shot_thresholds_auto_and_the_fallback_when_the_default_leaves_a_group_empty() -> None:
    counts = [300, 150, 120, 90, 60, 40, 30, 25, 22]  # (100, 20): no class under 20, 'few' would be empty
    y = np.arange(9).repeat(2)
    z = np.eye(9)[y] * 5
    fallback = M.compute(z, y, train_counts=counts, shot_thresholds=None)
    assert fallback["shot_thresholds"] == [90, 40]  # 9 classes: the 3 largest are many, the 3 smallest few
    assert {g: v["n_classes"] for g, v in fallback["shots"].items()} == {"many": 3, "medium": 3, "few": 3}
    assert "because the default (100, 20) leaves the 'few' group empty" in fallback["shot_rule"]
    auto = M.compute(z, y, train_counts=counts, shot_thresholds="auto")
    assert auto["shot_thresholds"] == [90, 40] and "eval.shot_thresholds: auto" in auto["shot_rule"]
    fixed = M.compute(z, y, train_counts=counts, shot_thresholds=(100, 20))
    assert fixed["shots"]["few"]["n_classes"] == 0 and fixed["shot_rule"].startswith("fixed: many > 100, few < 20")
    full = [300, 150, 90, 10]  # every default group has a class: the default stays
    assert M.resolve_shot_thresholds(full, None) == ((100, 20), "fixed: many > 100, few < 20 train images")


def test_shot_thresholds_config_takes_auto(tmp_path) -> None:
    from longtail.catalog.check import load_config

    from ..helpers import tiny_config

    assert load_config(raw=tiny_config(tmp_path, eval={"shot_thresholds": "auto"})).eval.shot_thresholds == "auto"
    with pytest.raises(Exception, match="shot_thresholds"):
        load_config(raw=tiny_config(tmp_path, eval={"shot_thresholds": "terciles"}))


def test_majority_minority_protocol() -> None:
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 0, 2])
    # precision: c0 1/2, c1 2/3, c2 1; recall: c0 1/2, c1 1, c2 1/2
    r = M.compute(np.eye(3)[pred] * 5, y, train_counts=[900, 700, 30], majority_threshold=600)
    mm = r["majority_minority"]
    assert mm["majority"]["n_classes"] == 2 and mm["minority"]["n_classes"] == 1
    assert mm["majority"]["precision"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert mm["majority"]["recall"] == pytest.approx(0.75)
    assert mm["minority"]["precision"] == pytest.approx(1.0) and mm["minority"]["recall"] == pytest.approx(0.5)
    line = next(row for row in M.format_table(r).splitlines() if row.startswith("majority (> 600)"))
    assert line.split()[-2:] == [M.fmt((1 / 2 + 2 / 3) / 2), "0.7500"]
    with pytest.raises(LongtailError, match="train_counts"):
        M.compute(np.eye(3)[pred], y, majority_threshold=600)
    # a minority class absent from the split (but predicted once) is left out of the means
    pred4 = np.array([0, 1, 1, 1, 3, 2])
    mm4 = M.compute(np.eye(4)[pred4] * 5, y, train_counts=[900, 700, 30, 10], majority_threshold=600)["majority_minority"]
    assert mm4["minority"] == {"precision": pytest.approx(1.0), "recall": pytest.approx(0.5), "n_classes": 2}


def test_isic2017_variants() -> None:
    rng = np.random.default_rng(8)
    y = rng.integers(0, 3, 150)
    z = noisy_logits(rng, y, 3)
    r = M.compute(z, y, isic2017=True)
    p = M.softmax(z.copy())
    pred = p.argmax(1)
    isic = r["isic2017"]
    assert isic["auc"] == pytest.approx((roc_auc_score(y == 0, p[:, 0]) + roc_auc_score(y == 1, p[:, 1])) / 2)
    rec = precision_recall_fscore_support(y, pred, labels=[0, 1, 2], zero_division=0)[1]
    assert isic["balanced_accuracy"] == pytest.approx((rec[0] + rec[1]) / 2)
    acc = [accuracy_score(y == c, pred == c) for c in (0, 1)]
    assert isic["accuracy"] == pytest.approx(np.mean(acc))


def test_torch_inputs_give_the_same_result() -> None:
    rng = np.random.default_rng(9)
    y = rng.integers(0, 6, 60)
    z = noisy_logits(rng, y, 6)
    a = M.compute(z, y, train_counts=[60, 50, 40, 30, 20, 10])
    b = M.compute(torch.tensor(z, dtype=torch.float64), torch.tensor(y), train_counts=torch.tensor([60, 50, 40, 30, 20, 10]))
    assert a == b


def test_format_table_lists_every_class_and_summary() -> None:
    rng = np.random.default_rng(10)
    y = rng.integers(0, 3, 30)
    y[y == 2] = 1
    r = M.compute(noisy_logits(rng, y, 3), y, train_counts=[100, 50, 5], class_names=["mel", "nv", "bcc"])
    text = M.format_table(r)
    lines = text.splitlines()
    assert lines[0].split() == ["class", "support", "train", "precision", "recall", "specificity", "F1", "AUC"]
    bcc = next(line for line in lines if line.startswith("bcc"))
    assert bcc.split()[1:3] == ["0", "5"] and bcc.split()[4] == "n/a"
    assert "balanced accuracy" in text and M.fmt(r["balanced_accuracy"]) in text
    assert "G-mean" in text and "MAUC" in text
    assert M.format_table(r, ["a", "b", "c"]).splitlines()[2].startswith("a ")


@pytest.mark.parametrize(
    "logits,targets,match",
    [
        (np.zeros((4,)), np.zeros(4, int), "N x C"),
        (np.zeros((4, 3)), np.zeros(3, int), "one per logit row"),
        (np.zeros((4, 3)), np.array([0, 1, 3, 0]), "outside 0..2"),
        (np.zeros((4, 3)), np.array([0, 1, -1, 0]), "unlabelled"),
        (np.full((2, 3), np.nan), np.array([0, 1]), "NaN"),
        (np.zeros((0, 3)), np.zeros(0, int), "empty"),
    ],
)
def test_bad_inputs_raise_one_line_errors(logits, targets, match) -> None:
    with pytest.raises(LongtailError, match=match) as info:
        M.compute(logits, targets)
    assert "\n" not in str(info.value)


def test_wrong_number_of_class_names_or_counts() -> None:
    with pytest.raises(LongtailError, match="class names"):
        M.compute(np.zeros((2, 3)), [0, 1], class_names=["a", "b"])
    with pytest.raises(LongtailError, match="one count per class"):
        M.compute(np.zeros((2, 3)), [0, 1], train_counts=[1, 2])
