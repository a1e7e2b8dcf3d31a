"""Tables shared by the sections and by ``compare``: Markdown / HTML rendering and metric tables.

A table is ``(header, rows)`` of already formatted strings, so one table renders the same in
both formats and a test can compare cells directly.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from ... import metrics as M
from .run import Run
from .section import Table


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table; ``|`` inside cells is escaped."""

    def esc(c: str) -> str:
        return str(c).replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def html_table(header: Sequence[str], rows: Sequence[Sequence[str]], text: bool = False) -> str:
    """An HTML table; numeric columns are right-aligned unless ``text``."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    cls = " class='text'" if text else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _posthoc_metrics(results: dict[str, Any] | None) -> dict[str, Any] | None:
    block = (results or {}).get("test_posthoc")
    if not isinstance(block, dict):
        return None
    if "balanced_prior" in block and isinstance(block["balanced_prior"], dict):
        return block["balanced_prior"]
    return block if "accuracy" in block else None


def summary_columns(run: Run) -> list[tuple[str, dict[str, Any], str]]:
    """(column title, metrics dict, results.json key) for the summary table: test, test post-hoc, val."""
    cols = []
    if "test" in run.metrics:
        cols.append(("test", run.metrics["test"], "test"))
    ph = _posthoc_metrics(run.results)
    if ph is not None:
        cols.append(("test, post-hoc", ph, "test_posthoc"))
    if "val" in run.metrics:
        cols.append(("validation", run.metrics["val"], "val"))
    return cols


def summary_table(columns: list[tuple[str, dict[str, Any], str]], intervals: dict[str, Any] | None = None) -> Table:
    """One row per summary metric that any column has, one column per metrics dict; a column with bootstrap
    intervals (results.json ``intervals``) is followed by their column."""
    intervals = intervals or {}
    label = M.interval_label(intervals) if "settings" in intervals else ""
    header = ["metric"]
    for title, _, key in columns:
        header += [title, f"{title}, {label}"] if key in intervals else [title]
    rows = []
    for metric, name in M.SUMMARY_METRICS:
        if not any(metric in m for _, m, _ in columns):
            continue
        row = [name]
        for _, m, key in columns:
            row.append(M.fmt(m.get(metric)))
            if key in intervals:
                row.append(M.interval_text(intervals[key].get(metric)))
        rows.append(row)
    return header, rows


def per_class_table(metrics: dict[str, Any]) -> Table:
    """One row per class with the per-class columns of ``metrics.compute``."""
    header = ["class", *(label for _, label in M.PER_CLASS_COLUMNS)]
    rows = [[str(p["name"]), *(M.fmt(p.get(k)) for k, _ in M.PER_CLASS_COLUMNS)] for p in metrics["per_class"]]
    return header, rows
