"""The SPBL sections: the per-pace tables and balance figure, then SPBL's metric table."""

from __future__ import annotations

from longtail.evaluation.report.sections.spbl import spbl_paces, spbl_sections

from .common import hand_run


def pace(n: int, ratio: float) -> dict:
    return {"kind": "spbl_pace", "pace": n, "ratio": ratio, "cnn_train_images": 100 + n, "classifier_rows": 300 + n, "val_balanced_accuracy": 0.5,
            "cnn_val_balanced_accuracy": 0.25, "cnn_seconds": 1.26, "feature_seconds": 0.5, "classifier_fit_seconds": 2.0,
            "selected_counts": [0, n, 2 * n], "complexity": [0.5, 1.0, 2.0], "cost": [0.1, 0.5, 1.0], "target_counts": [10, 20, 30],
            "delta": [0, 5, -1], "classifier_rows_per_class": [100, 50 + n, 10], "classifier_weight_per_class": [1.0, 2.0, 3.25]}


def test_pace_tables_figure_and_metric_table(tmp_path) -> None:
    history = [{"epoch": 0, "train_loss": 1.0}, pace(1, 0.5), pace(0, 0.0)]
    assert [p["pace"] for p in spbl_paces(history)] == [0, 1]
    overview, metric = spbl_sections(hand_run(tmp_path, splits=("val",), history=history))
    assert overview.title == "SPBL paces"
    (header, rows), (pace_header, pace_rows) = overview.tables  # the overview, then one table per pace after the first
    assert header[0] == "pace" and rows[1] == ["1", "0.5", "101", "301", "0.5000", "0.2500", "1.3", "0.5", "2.0"]
    assert pace_header[0] == "class (pace 1, ratio 0.5)"
    assert pace_rows[2] == ["tail", "2", "2", "1.000", "30", "-1", "10", "3.2"]
    assert [stem for stem, _ in overview.figures] == ["spbl_balance"]
    assert metric.title == "SPBL metric table" and metric.text == ["On the validation split, with the final classifier."]
    assert [r[0] for r in metric.tables[0][1]] == ["head", "mid", "tail", "macro", "weighted"]


def test_not_an_spbl_run(tmp_path) -> None:
    assert spbl_sections(hand_run(tmp_path, history=[{"epoch": 0, "train_loss": 1.0}])) == []
