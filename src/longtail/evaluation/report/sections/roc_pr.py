"""The "ROC and precision-recall curves" section: each class against the rest, from the stored predictions."""

from __future__ import annotations

import numpy as np

from .... import metrics as M
from ..figures import figure_roc_pr
from ..run import Run, split_label
from ..section import Section


def roc_pr_sections(run: Run) -> list[Section]:
    """AUC / AP per class and their curves on the main split; none without stored labelled predictions.

    Uses ``run.main_split`` even when its metrics lack the per-class table: the curves come from
    predictions/<split>.npz, not from results.json."""
    from ...decision import one_vs_rest

    split = run.main_split
    stored = run.predictions(split) if split else None
    if split is None or stored is None:
        return []
    logits, targets = stored
    names = run.class_names or [str(c) for c in range(logits.shape[1])]
    curves = one_vs_rest(M.softmax(logits.astype(np.float64)), targets, names, with_curves=True)
    section = Section(f"ROC and precision-recall curves ({split_label(split)})")
    section.tables.append((["class", "images", "ROC AUC", "average precision"], [[c["name"], str(c["positives"]), M.fmt(c["auc"]), M.fmt(c["ap"])] for c in curves]))
    figure = figure_roc_pr(curves)
    if figure is not None:
        section.figures.append(("roc_pr", figure))
    section.text.append("Each class against all the others, from the predicted probability of that class; n/a where the split lacks images of the class.")
    return [section]
