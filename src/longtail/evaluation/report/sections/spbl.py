"""The SPBL sections: what each self-paced pace selected and fitted, and SPBL's own metric table.

Only SPBL runs write ``kind: spbl_pace`` records into metrics.jsonl; every other run gets no section.
"""

from __future__ import annotations

from typing import Any

from .... import metrics as M
from ..figures import figure_spbl_balance
from ..run import Run, detail_split, split_label
from ..section import Section


def spbl_paces(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pace records an SPBL run writes into metrics.jsonl, in pace order."""
    return sorted((r for r in history if r.get("kind") == "spbl_pace"), key=lambda r: r["pace"])


def spbl_sections(run: Run) -> list[Section]:
    """SPBL runs: the per-pace table (selection, complexity H, cost vector, curriculum deltas, SVM
    rows), the class balance of the SVM's training set over paces, and SPBL's metric table."""
    paces = spbl_paces(run.history)
    if not paces:
        return []
    names = run.class_names or [str(c) for c in range(len(paces[0]["classifier_rows_per_class"]))]
    overview = (
        ["pace", "pool ratio", "CNN images", "classifier rows", "val bal. acc. (classifier)", "val bal. acc. (CNN)", "CNN s", "features s", "classifier fit s"],
        [[str(r["pace"]), f"{r['ratio']:g}", str(r["cnn_train_images"]), str(r["classifier_rows"]), M.fmt(r["val_balanced_accuracy"]),
          M.fmt(r["cnn_val_balanced_accuracy"]), f"{r['cnn_seconds']:.1f}", f"{r['feature_seconds']:.1f}", f"{r['classifier_fit_seconds']:.1f}"] for r in paces],
    )
    section = Section("SPBL paces", tables=[overview])
    section.text.append(
        "Per pace: k = pool images selected per class, H = class complexity (rescaled), cost = the class's SVM weight, "
        "target / delta = the curriculum rebuilt at feature level, rows / weight = the class in the classifier's training set (all blocks)."
    )
    for r in paces[1:]:
        header = [f"class (pace {r['pace']}, ratio {r['ratio']:g})", "k", "H", "cost", "target", "delta", "rows", "weight"]
        rows = [[names[c], str(r["selected_counts"][c]), f"{r['complexity'][c]:g}", f"{r['cost'][c]:.3f}", str(r["target_counts"][c]),
                 str(r["delta"][c]), str(r["classifier_rows_per_class"][c]), f"{r['classifier_weight_per_class'][c]:.1f}"] for c in range(len(names))]
        section.tables.append((header, rows))
    section.figures.append(("spbl_balance", figure_spbl_balance(paces, names)))
    sections = [section]
    split = detail_split(run)
    if split is not None:
        sections.append(Section("SPBL metric table", tables=M.spbl_tables(run.metrics[split]), text=[f"On the {split_label(split)} split, with the final classifier."]))
    return sections
