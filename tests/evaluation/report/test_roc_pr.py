"""The ROC and precision-recall section: AUC / AP per class from the stored predictions of the main split."""

from __future__ import annotations

from sklearn.metrics import average_precision_score, roc_auc_score

from longtail import metrics as M
from longtail.evaluation.report.sections.roc_pr import roc_pr_sections

from .common import NAMES, TARGETS, hand_run, logits, write_predictions


def test_auc_and_ap_per_class_from_the_labelled_rows(tmp_path) -> None:
    run = hand_run(tmp_path)
    write_predictions(run)
    [section] = roc_pr_sections(run)
    assert section.title == "ROC and precision-recall curves (test)"
    [(header, rows)] = section.tables
    assert header == ["class", "images", "ROC AUC", "average precision"]
    p = M.softmax(logits())
    for c, (name, row) in enumerate(zip(NAMES, rows)):
        positive = TARGETS == c
        assert row == [name, str(int(positive.sum())), M.fmt(roc_auc_score(positive, p[:, c])), M.fmt(average_precision_score(positive, p[:, c]))]
    assert [stem for stem, _ in section.figures] == ["roc_pr"]


def test_validation_split_and_no_predictions(tmp_path) -> None:
    run = hand_run(tmp_path, splits=("val",))
    assert roc_pr_sections(run) == []  # metrics but no predictions/val.npz
    write_predictions(run, "val")
    assert roc_pr_sections(run)[0].title == "ROC and precision-recall curves (validation)"
