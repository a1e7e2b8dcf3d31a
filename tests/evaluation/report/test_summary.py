"""The Summary metrics section: one column per evaluated split and the post-hoc test column."""

from __future__ import annotations

from longtail import metrics as M
from longtail.evaluation.report.sections.summary import summary_sections

from .common import hand_metrics, hand_run


def test_columns_test_posthoc_validation(tmp_path) -> None:
    posthoc = hand_metrics() | {"balanced_accuracy": 0.9}
    run = hand_run(tmp_path, test_posthoc={"balanced_prior": posthoc})
    [section] = summary_sections(run)
    assert section.title == "Summary metrics" and section.text == [M.CONVENTIONS]
    [(header, rows)] = section.tables
    assert header == ["metric", "test", "test, post-hoc", "validation"]
    by_label = {r[0]: r[1:] for r in rows}
    test = run.metrics["test"]
    assert by_label["balanced accuracy"] == [M.fmt(test["balanced_accuracy"]), "0.9000", M.fmt(test["balanced_accuracy"])]
    assert by_label["accuracy"][0] == "0.7500"  # 6 of the 8 hand predictions are right
    assert "top-5 accuracy" not in by_label  # no column has it


def test_validation_only_and_nothing_evaluated(tmp_path) -> None:
    [section] = summary_sections(hand_run(tmp_path, splits=("val",)))
    assert section.tables[0][0] == ["metric", "validation"]
    assert summary_sections(hand_run(tmp_path, splits=())) == []
