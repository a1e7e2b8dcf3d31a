"""The Training curves section: always present, with the curves or a note that there is no log."""

from __future__ import annotations

from longtail.evaluation.report.sections.curves import training_curve_sections

from .common import hand_run

HISTORY = [{"epoch": e, "stage": "main", "train_loss": 2.0 - 0.5 * e, "val_loss": 1.5 - 0.2 * e, "val_accuracy": 0.3 + 0.2 * e, "lr": 0.1} for e in range(3)]


def test_curves_and_the_word_on_two_losses(tmp_path) -> None:
    [section] = training_curve_sections(hand_run(tmp_path, history=HISTORY))
    assert section.title == "Training curves"
    assert [stem for stem, _ in section.figures] == ["curves"]
    assert len(section.text) == 1 and "the validation loss is the plain cross-entropy" in section.text[0]
    [section] = training_curve_sections(hand_run(tmp_path, history=[{k: v for k, v in r.items() if k != "val_loss"} for r in HISTORY]))
    assert section.text == [] and len(section.figures) == 1


def test_no_log(tmp_path) -> None:
    [section] = training_curve_sections(hand_run(tmp_path, history=[{"kind": "spbl_pace", "pace": 0}]))
    assert section.figures == [] and section.text == ["No per-epoch log (metrics.jsonl) to plot."]
