"""Plain-text tables of a metrics dict, for the CLI and the report: summary, shot groups, per class, SPBL's tables."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .classification import SUMMARY_METRICS
from .shots import SHOT_GROUPS


# --------------------------------------------------------------------------------- display
def fmt(value: Any, digits: int = 4) -> str:
    """A metric for display: 'n/a' for None/NaN, fixed digits otherwise."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    return f"{float(value):.{digits}f}"


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, formatted value) for every summary metric present in ``result``."""
    return [(label, fmt(result[key])) for key, label in SUMMARY_METRICS if key in result]


def interval_text(entry: dict[str, Any] | None, digits: int = 4) -> str:
    """'[low, high]' of a bootstrap interval (``metrics.bootstrap``), 'n/a' when it is undefined or absent."""
    if not entry or fmt(entry.get("low")) == "n/a" or fmt(entry.get("high")) == "n/a":
        return "n/a"
    return f"[{fmt(entry['low'], digits)}, {fmt(entry['high'], digits)}]"


def interval_label(intervals: dict[str, Any]) -> str:
    """The header of an interval column: '95% CI' (from the stored settings)."""
    level = (intervals.get("settings") or {}).get("confidence", 0.95)
    return f"{100 * float(level):g}% CI"


def shot_rows(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(group, rule, classes, accuracy) rows of the shot table, empty when no train counts."""
    shots = result.get("shots")
    if not shots:
        return []
    hi, lo = result.get("shot_thresholds", (100, 20))
    rules = {"many": f"> {hi}", "medium": f"{lo}..{hi}", "few": f"< {lo}"}
    return [
        (g, rules[g], f"{shots[g]['n_classes']} ({shots[g]['n_test_classes']} in split)", fmt(shots[g]["accuracy"]))
        for g in SHOT_GROUPS
    ]


PER_CLASS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("support", "support"),
    ("train_count", "train"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("specificity", "specificity"),
    ("f1", "F1"),
    ("auc", "AUC"),
)


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain aligned table: first column left-aligned, the rest right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def interval_note(settings: dict[str, Any]) -> str:
    """One line saying what the intervals are: level, method, resamples, unit, seed."""
    unit = settings.get("unit", "images")
    groups = f", {settings['groups']} groups of {settings['images']} images" if "groups" in settings else f", {settings.get('images')} images"
    return (f"intervals: {100 * float(settings['confidence']):g}% {settings['method']} bootstrap, {settings['resamples']} resamples of "
            f"{unit}{groups}, seed {settings['seed']} (eval.bootstrap)")


def format_table(result: dict[str, Any], class_names: Sequence[str] | None = None, per_class: bool = True,
                 intervals: dict[str, Any] | None = None, split: str = "test") -> str:
    """Per-class table (unless ``per_class=False``), summary metrics and shot groups as plain text.

    ``intervals`` (results.json's block) adds each summary metric's bootstrap interval of ``split``."""
    parts = []
    if per_class:
        rows_in = result["per_class"]
        names = list(class_names) if class_names is not None and len(class_names) == len(rows_in) else [p["name"] for p in rows_in]
        rows = [[names[i], *(fmt(p[k]) for k, _ in PER_CLASS_COLUMNS)] for i, p in enumerate(rows_in)]
        parts.append(text_table(["class", *(label for _, label in PER_CLASS_COLUMNS)], rows))
    ci = (intervals or {}).get(split)
    if ci:
        rows = [[label, fmt(result[key]), interval_text(ci.get(key))] for key, label in SUMMARY_METRICS if key in result]
        parts.append(text_table(["metric", "value", interval_label(intervals or {})], rows))
    else:
        parts.append(text_table(["metric", "value"], summary_rows(result)))
    parts += [text_table(header, rows) for header, rows in group_tables(result)]
    return "\n\n".join(parts) + "\n"


def group_tables(result: dict[str, Any]) -> list[tuple[list[str], list[list[str]]]]:
    """(header, rows) of the optional group tables present in ``result``: shots, majority/minority, ISIC 2017."""
    tables = []
    shots = shot_rows(result)
    if shots:
        tables.append((["shots", "train count", "classes", "accuracy"], [list(r) for r in shots]))
    mm = result.get("majority_minority")
    if mm:
        rows = [[f"{g} ({'>' if g == 'majority' else '<='} {mm['threshold']})", str(mm[g]["n_classes"]), fmt(mm[g]["precision"]), fmt(mm[g]["recall"])] for g in ("majority", "minority")]
        tables.append((["group", "classes", "precision", "recall"], rows))
    isic = result.get("isic2017")
    if isic:
        tables.append((["ISIC 2017 (MEL + SK)", "value"], [[k, fmt(v)] for k, v in isic.items()]))
    return tables


SPBL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("precision", "precision"),
    ("recall", "recall"),
    ("specificity", "specificity"),
    ("f1", "F1"),
    ("gmean", "G-mean"),
    ("iba", "IBA"),
    ("support", "support"),
)


def spbl_tables(result: dict[str, Any]) -> list[tuple[list[str], list[list[str]]]]:
    """SPBL's metric table (its embedded copy of imbalanced-learn's ``classification_report_imbalanced``):
    per class precision, recall, specificity, F1, G-mean, IBA and support, then the macro row (over the
    classes present) and the support-weighted row; then the figures the SPBL paper reports (macro
    precision / recall / F1, multi-class G-mean, MAUC, accuracy)."""
    per_class = result["per_class"]
    present = [p for p in per_class if p["support"] > 0]
    total = sum(p["support"] for p in present)
    rows = [[str(p["name"]), *(fmt(p.get(k)) for k, _ in SPBL_COLUMNS)] for p in per_class]
    stats = [k for k, _ in SPBL_COLUMNS if k != "support"]
    macro = [float(np.mean([p[k] for p in present])) if present else None for k in stats]
    weighted = [float(sum(p[k] * p["support"] for p in present) / total) if total else None for k in stats]
    rows.append(["macro", *(fmt(v) for v in macro), str(total)])
    rows.append(["weighted", *(fmt(v) for v in weighted), str(total)])
    paper = [
        ["precision (macro)", fmt(result.get("macro_precision"))],
        ["recall (macro)", fmt(result.get("macro_recall"))],
        ["F1 (macro)", fmt(result.get("macro_f1"))],
        ["G-mean (multi-class, zero recall -> 0.001)", fmt(result.get("gmean"))],
        ["MAUC (Hand & Till)", fmt(result.get("mauc"))],
        ["accuracy", fmt(result.get("accuracy"))],
    ]
    return [(["class", *(label for _, label in SPBL_COLUMNS)], rows), (["SPBL summary", "value"], paper)]
