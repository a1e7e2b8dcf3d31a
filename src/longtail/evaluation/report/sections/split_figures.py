"""The "Figures" section of the main split: train counts beside per-class recall, the confusion matrix, the reliability diagram."""

from __future__ import annotations

from ..figures import figure_confusion, figure_counts_recall, figure_reliability
from ..run import Run, detail_split, split_label
from ..section import Section


def split_figure_sections(run: Run) -> list[Section]:
    """The main split's figures; the reliability diagram only when the metrics carry its bins."""
    split = detail_split(run)
    if split is None:
        return []
    m = run.metrics[split]
    figs = Section(f"Figures ({split_label(split)})")
    figs.figures.append(("counts_recall", figure_counts_recall(m, run.train_counts)))
    figs.figures.append(("confusion", figure_confusion(m)))
    rel = figure_reliability(m)
    if rel is not None:
        figs.figures.append(("reliability", rel))
    return [figs]
