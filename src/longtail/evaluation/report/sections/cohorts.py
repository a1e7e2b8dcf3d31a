"""The "Subgroups" and "Cases" sections: per-group metrics of eval.subgroups columns, and metrics over cases (eval.aggregate_by).

results.json's ``subgroups`` and ``cases`` blocks (``evaluation/cohorts.py``) hold the numbers; these
sections only lay them out.
"""

from __future__ import annotations

from typing import Any

from .... import metrics as M
from ..figures import figure_subgroups
from ..run import Run
from ..section import Section


def cohort_sections(run: Run) -> list[Section]:
    results = run.results or {}
    out = []
    block = results.get("subgroups") or {}
    if block.get("note"):
        run.notes.append(f"Subgroup tables skipped: {block['note']}")
    if block.get("tables"):
        out.append(subgroup_section(block))
    if results.get("cases"):
        out.append(case_section(results["cases"]))
    return out


def subgroup_section(block: dict[str, Any]) -> Section:
    tables = []
    text = []
    for t in block["tables"]:
        header = [t["column"], "images", "balanced accuracy", "accuracy", *(["sensitivity (positive)"] if t.get("positive") else [])]
        body = [[r["group"], M.fmt(r["n"]), M.fmt(r["balanced_accuracy"]), M.fmt(r["accuracy"]),
                 *([M.fmt(r["sensitivity"])] if t.get("positive") else [])] for r in t["groups"]]
        tables.append((header, body))
        text.append(f"{t['column']}: worst group {t['worst'] or 'n/a'}, best {t['best'] or 'n/a'}, gap {M.fmt(t['gap'])} "
                    f"(groups with fewer than {t['min_count']} images are n/a and left out).")
    figure = figure_subgroups(block["tables"])
    text.append("Balanced accuracy inside a group is the mean recall over the classes present in it; missing values form the group 'unknown'.")
    return Section(f"Subgroups ({block['split']})", tables=tables, figures=[("subgroups", figure)] if figure else [], text=text)


def case_section(block: dict[str, Any]) -> Section:
    header = ["metric", f"images ({block['images']})", f"cases by {block['column']} ({block['cases']})"]
    body = [[k.replace("_", " "), M.fmt(block["image"][k]), M.fmt(block["case"][k])] for k in block["image"]]
    text = ("Each case's images' probabilities are averaged into one prediction (the case's expected probability over its images), "
            "so a case with many photographs counts once.")
    return Section(f"Cases ({block['split']})", tables=[(header, body)], text=[text])
