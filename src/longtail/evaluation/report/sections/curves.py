"""The "Training curves" section: loss, validation metrics and learning rate per epoch from metrics.jsonl.

Always present, so a run without a log says so on the page.
"""

from __future__ import annotations

from ..figures import figure_curves
from ..run import Run
from ..section import Section


def training_curve_sections(run: Run) -> list[Section]:
    """The curves figure (with a word on the two losses when both are logged), or a note that there is no log."""
    curves = figure_curves(run.history)
    training = Section("Training curves")
    if curves is not None:
        training.figures.append(("curves", curves))
        if any("val_loss" in r for r in run.history):
            training.text.append("Loss: the training loss is the method's own (margins, weights or prior shifts included); "
                                 "the validation loss is the plain cross-entropy of the validation logits, comparable across methods.")
    else:
        training.text.append("No per-epoch log (metrics.jsonl) to plot.")
    return [training]
