"""The Figures section: counts beside recall, the confusion matrix and the reliability diagram of the main split."""

from __future__ import annotations

from longtail.evaluation.report.sections.split_figures import split_figure_sections

from .common import hand_run

PNG = b"\x89PNG\r\n\x1a\n"


def test_three_figures_of_the_main_split(tmp_path) -> None:
    [section] = split_figure_sections(hand_run(tmp_path, splits=("val",)))
    assert section.title == "Figures (validation)"
    assert [stem for stem, _ in section.figures] == ["counts_recall", "confusion", "reliability"]
    assert all(png.startswith(PNG) and len(png) > 5000 for _, png in section.figures)


def test_no_reliability_bins_no_reliability_figure(tmp_path) -> None:
    run = hand_run(tmp_path)
    del run.metrics["test"]["reliability"]
    [section] = split_figure_sections(run)
    assert [stem for stem, _ in section.figures] == ["counts_recall", "confusion"]
    assert split_figure_sections(hand_run(tmp_path, splits=())) == []
