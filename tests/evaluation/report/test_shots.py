"""The Shot groups section: many / medium / few-shot accuracy of the main split."""

from __future__ import annotations

from longtail.evaluation.report.sections.shots import shot_group_sections

from .common import hand_metrics, hand_run


def test_group_rows_and_thresholds(tmp_path) -> None:
    [section] = shot_group_sections(hand_run(tmp_path))
    assert section.title == "Shot groups (test)"
    [(header, rows)] = section.tables
    assert header == ["shots", "train count", "classes", "accuracy"]
    assert rows == [["many", "> 100", "1 (1 in split)", "0.7500"], ["medium", "20..100", "1 (1 in split)", "1.0000"], ["few", "< 20", "1 (1 in split)", "0.5000"]]
    assert section.text == ["Shot thresholds: fixed: many > 100, few < 20 train images."]


def test_without_train_counts_says_why_and_older_results_get_none(tmp_path) -> None:
    run = hand_run(tmp_path, splits=("val",))
    run.metrics["val"] = hand_metrics(counts=None)
    [section] = shot_group_sections(run)
    assert section.title == "Shot groups (validation)" and section.tables == []
    assert section.text == ["No training class counts in results.json: shot groups cannot be formed."]
    old = hand_run(tmp_path)
    del old.metrics["test"]["per_class"]
    assert shot_group_sections(old) == []
