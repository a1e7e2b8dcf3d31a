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
        ci = ((run.results or {}).get("intervals") or {}).get(split or "") or {}
        rows.append(
            [
                run.name,
                (cfg.get("method") or {}).get("name", "-"),
                _stage_names(cfg, "loss"),
                _stage_names(cfg, "sampler"),
                split or "-",
                *(_with_interval(m.get(k), ci.get(k)) for k in COMPARE_METRICS),
                *(M.fmt((shots.get(g) or {}).get("accuracy")) for g in M.SHOT_GROUPS),
            ]
        )
    if len({r[0] for r in rows}) < len(rows):  # same config name (e.g. seeds): tell them apart by folder
        for row, d in zip(rows, run_dirs):
            row[0] = str(d)
    return header, rows


def _with_interval(value: Any, entry: dict[str, Any] | None) -> str:
    """'0.6717 [0.6410, 0.7012]' when the run stored the metric's bootstrap interval, else the value alone."""
    return M.fmt(value) if not entry else f"{M.fmt(value)} {M.interval_text(entry)}"


def paired_rows(paired: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per (run, metric) of :func:`~longtail.evaluation.intervals.paired_comparison`: the run's value, the
    baseline's, the difference with its interval and p-value (Holm-adjusted too when several runs are compared)."""
    level = f"{100 * float(paired['settings']['confidence']):g}% CI"
    holm = paired["settings"]["correction"] == "holm"
    header = ["run", "metric", "run value", "baseline value", "difference", level, "p", *(["p (Holm)"] if holm else [])]
    rows = []
    for c in paired["comparisons"]:
        for metric, d in c["metrics"].items():
            rows.append([c["run"], metric, M.fmt(d["a"]), M.fmt(d["b"]), M.fmt(d["difference"]), M.interval_text(d), M.fmt(d["p_value"]),
                         *([M.fmt(d.get("p_holm"))] if holm else [])])
    return header, rows


def paired_text(paired: dict[str, Any]) -> str:
    """The paired comparison as Markdown: its table, McNemar's test per run, and what was resampled."""
    st = paired["settings"]
    lines = [f"Paired against {paired['baseline']} on the same {st['images']} test images (each run scored as its headline: "
             "after its post-hoc correction where it has one; difference = run - baseline): "
             f"{st['method']} bootstrap, {st['resamples']} resamples of {st['unit']}, seed {st['seed']}; "
             + ("p-values Holm-adjusted over the runs compared with the baseline, per metric." if st["correction"] == "holm"
                else "one comparison, no multiple-comparison correction."), "", md_table(*paired_rows(paired)), ""]
    for c in paired["comparisons"]:
        m = c["mcnemar"]
        lines.append(f"McNemar (accuracy), {c['run']}: right only in the run {m['b']}, right only in the baseline {m['c']}, "
                     f"exact p = {M.fmt(m['p_value'])}")
    return "\n".join(lines) + "\n"


def compare(run_dirs: Sequence[str | Path], out: str | Path | None = None) -> str:
    """A Markdown table comparing runs; with ``out``, also written as ``<out>.md`` and ``<out>.csv``.

    With two runs or more that were tested on the same images, every run is also compared with the first,
    paired (:func:`~longtail.evaluation.intervals.paired_comparison`)."""
    if not run_dirs:
        raise LongtailError("compare needs at least one run directory")
    paths = _outputs(out) if out is not None else None
    header, rows = compare_rows(run_dirs)
    table = md_table(header, rows) + "\n"
    if len(run_dirs) > 1:
        from ..intervals import paired_comparison

        try:
            table += "\n" + paired_text(paired_comparison(run_dirs))
        except LongtailError as e:  # runs of different data, or without saved test predictions: the table alone
            table += f"\nNo paired comparison: {e}\n"
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
