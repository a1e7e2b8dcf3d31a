"""The Per-class metrics section: one row per class of the main split."""

from __future__ import annotations

from longtail.evaluation.report.sections.per_class import per_class_sections

from .common import hand_run


def test_one_row_per_class(tmp_path) -> None:
    [section] = per_class_sections(hand_run(tmp_path))
    assert section.title == "Per-class metrics (test)"
    [(header, rows)] = section.tables
    assert header == ["class", "support", "train", "precision", "recall", "specificity", "F1", "AUC"]
    assert [r[:5] for r in rows] == [["head", "4", "200", "0.7500", "0.7500"], ["mid", "2", "50", "0.6667", "1.0000"], ["tail", "2", "5", "1.0000", "0.5000"]]


def test_validation_and_missing_table(tmp_path) -> None:
    assert per_class_sections(hand_run(tmp_path, splits=("val",)))[0].title == "Per-class metrics (validation)"
    old = hand_run(tmp_path)
    del old.metrics["test"]["confusion_matrix"]
    assert per_class_sections(old) == []
