"""The Operating points section: thresholds for target specificities, read from the decision block of results.json."""

from __future__ import annotations

from longtail.evaluation.report.sections.operating_points import (
    operating_point_sections,
)

from .common import hand_run

POINTS = [
    {"target_specificity": 0.9, "threshold": 0.123456, "val_sensitivity": 0.8, "val_specificity": 0.91, "test_sensitivity": 0.75, "test_specificity": 0.9},
    {"target_specificity": 0.95, "threshold": 0.5, "val_sensitivity": 0.6, "val_specificity": 0.96, "test_sensitivity": None, "test_specificity": 0.97},
]


def test_rows_per_target_specificity(tmp_path) -> None:
    run = hand_run(tmp_path, decision={"positive": ["tail", "mid"], "operating_points": POINTS})
    [section] = operating_point_sections(run)
    assert section.title == "Operating points (positive: tail + mid)"
    [(header, rows)] = section.tables
    assert header[-2:] == ["test sensitivity", "test specificity"]
    assert rows == [["0.90", "0.1235", "0.8000", "0.9100", "0.7500", "0.9000"], ["0.95", "0.5000", "0.6000", "0.9600", "n/a", "0.9700"]]
    assert section.text[0].startswith("Positive: tail + mid (the summed probability")


def test_validation_only_columns_and_skip_note(tmp_path) -> None:
    val_only = [{k: v for k, v in p.items() if not k.startswith("test_")} for p in POINTS]
    [section] = operating_point_sections(hand_run(tmp_path, decision={"positive": ["tail"], "operating_points": val_only}))
    assert len(section.tables[0][0]) == 4
    run = hand_run(tmp_path, decision={"note": "no validation images of the positive class"})
    assert operating_point_sections(run) == [] and operating_point_sections(hand_run(tmp_path)) == []
    assert run.notes == ["Decision tables skipped: no validation images of the positive class"]
