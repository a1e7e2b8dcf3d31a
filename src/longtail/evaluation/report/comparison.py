"""Runs side by side: one row of key metrics per run directory, as Markdown and CSV."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ... import metrics as M
from ...core.errors import LongtailError
from .run import load_run
from .tables import md_table

COMPARE_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "gmean", "mauc", "macro_auc", "ece")


def _stage_names(cfg: dict[str, Any], key: str) -> str:
    """The ``key`` component (loss, sampler) per stage, repeats merged: 'instance -> class_balanced'."""
    seq = [((s.get(key) or cfg.get(key)) or {}).get("name", "-") for s in cfg.get("stages") or [{}]]
    return " -> ".join(n for i, n in enumerate(seq) if i == 0 or n != seq[i - 1])


def compare_rows(run_dirs: Sequence[str | Path]) -> tuple[list[str], list[list[str]]]:
    """One row per run: name, method, loss, sampler, split, key metrics and shot accuracies."""
    header = ["run", "method", "loss", "sampler", "split", *COMPARE_METRICS, "many", "medium", "few"]
    rows = []
    for d in run_dirs:
        run = load_run(d)
        cfg = run.config or {}
        split = run.main_split
        m = run.metrics.get(split, {}) if split else {}
        shots = m.get("shots") or {}
        rows.append(
            [
                run.name,
                (cfg.get("method") or {}).get("name", "-"),
                _stage_names(cfg, "loss"),
                _stage_names(cfg, "sampler"),
                split or "-",
                *(M.fmt(m.get(k)) for k in COMPARE_METRICS),
                *(M.fmt((shots.get(g) or {}).get("accuracy")) for g in M.SHOT_GROUPS),
            ]
        )
    if len({r[0] for r in rows}) < len(rows):  # same config name (e.g. seeds): tell them apart by folder
        for row, d in zip(rows, run_dirs):
            row[0] = str(d)
    return header, rows


def compare(run_dirs: Sequence[str | Path], out: str | Path | None = None) -> str:
    """A Markdown table comparing runs; with ``out``, also written as ``<out>.md`` and ``<out>.csv``."""
    if not run_dirs:
        raise LongtailError("compare needs at least one run directory")
    paths = _outputs(out) if out is not None else None
    header, rows = compare_rows(run_dirs)
    table = md_table(header, rows) + "\n"
    if paths is not None:
        from ... import rundir

        rundir.atomic_write_bytes(paths[0], table.encode())
        rundir.write_csv(paths[1], header, rows)
    return table


def _outputs(out: str | Path) -> tuple[Path, Path]:
    """``<out>.md`` and ``<out>.csv``, checked before any work (no folder, no file a run owns)."""
    from ... import rundir
    from ...rundir.outputs import check_not_folder

    stem = Path(out)
    check_not_folder(stem, "compare", "comparison.md")
    stem = stem.with_suffix("") if stem.suffix in (".md", ".csv") else stem
    return rundir.check_output(f"{stem}.md", "compare", "comparison.md"), rundir.check_output(f"{stem}.csv", "compare", "comparison.csv")
