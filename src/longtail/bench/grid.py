"""Benchmark grids: methods x seeds (x datasets) at one budget, selected on validation, tested once.

A grid is a YAML file::

    name: ham10000
    output_dir: benchmarks/runs/ham10000      # one run directory per cell
    results: benchmarks/results/ham10000.csv  # one row per finished cell
    seeds: [0, 1, 2]
    overrides: [train.epochs=12]              # applied to every cell (the shared budget)
    extra_metrics: [weighted_precision, micro_auc]  # optional columns (any summary metric, or stopped_epoch)
    datasets: {ham64: []}                     # optional: name -> extra overrides
    methods:
      ce: {config: configs/ham10000/ce.yaml}
      logit_adjust: {config: configs/ham10000/ce.yaml, overrides: [posthoc.logit_adjust=true], posthoc: true,
                     same_training_as: ce}

Each cell is an ordinary run. A rerun skips finished cells (``results.json`` exists), resumes
interrupted ones from ``last.pt`` and can be limited with ``--only`` / ``--seeds`` / ``--datasets``. A method whose
config differs from another's only after training (``posthoc``, ``eval``) can say
``same_training_as``: its cells re-evaluate that method's trained cells instead of training the
same network again.
"""

from __future__ import annotations

import argparse
import csv
import html
import os
import shutil
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .. import rundir
from ..core.errors import ConfigError, LongtailError
from .progress import Cell, GridProgress

COLUMNS = [
    "dataset", "method", "seed", "accuracy", "balanced_accuracy", "macro_f1", "gmean", "mauc", "ece",
    "val_balanced_accuracy", "train_seconds", "epochs", "best_epoch", "run_dir",
]
#: where and how a row was made (from the run's environment.json), kept in the CSV so that a table
#: rebuilt from the CSV alone (the run directories gone, e.g. in a fresh clone) still names its runs
PROVENANCE = ["git_revision", "torch", "machine", "command"]
SUMMARY_METRICS = ["balanced_accuracy", "macro_f1", "gmean", "mauc", "accuracy", "ece", "val_balanced_accuracy"]
#: config sections that act only after training: two methods that differ in nothing else train the same network
AFTER_TRAINING = ("posthoc", "eval")
#: what names a cell's run rather than what it trains
RUN_IDENTITY = ("name", "output_dir")
#: what a run writes after training; a cell that shares another's training starts from a copy without these
EVALUATION_OUTPUTS = (rundir.RESULTS, rundir.POSTHOC, rundir.PREDICTIONS, "report.html", "report.md", "report_files")


class MethodSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    config: str
    overrides: list[str] = []
    posthoc: bool = Field(False, description="report the test metrics after the post-hoc correction chosen on validation")
    same_training_as: str | None = Field(
        None, description="a method of this grid whose trained cells this one re-evaluates (same dataset and seed); "
                          "the two configs may differ only in posthoc and eval")


class BenchSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    output_dir: str
    results: str
    seeds: list[int] = [0]
    overrides: list[str] = []
    datasets: dict[str, list[str]] = {"default": []}
    methods: dict[str, MethodSpec]
    extra_metrics: list[str] = Field([], description="optional columns: summary metrics of longtail.metrics (e.g. weighted_precision, micro_auc) or stopped_epoch")

    @field_validator("extra_metrics")
    @classmethod
    def _known_metrics(cls, v: list[str]) -> list[str]:
        from ..core.errors import did_you_mean

        known = optional_columns()
        for name in v:
            if name not in known:
                raise ValueError(f"'{name}' is not an optional column{did_you_mean(name, known)}; choose from: {', '.join(known)}")
        return [name for name in v if name not in COLUMNS]

    @model_validator(mode="after")
    def _shared_training_names_a_training_method(self) -> BenchSpec:
        for name, m in self.methods.items():
            base = m.same_training_as
            if base is None:
                continue
            if base not in self.methods or base == name:
                others = [k for k in self.methods if k != name]
                raise ValueError(f"method '{name}': same_training_as '{base}' is not another method of this grid; choose from: {', '.join(others)}")
            if self.methods[base].same_training_as is not None:
                raise ValueError(f"method '{name}': same_training_as '{base}', which itself re-uses '{self.methods[base].same_training_as}'s "
                                 f"training; name '{self.methods[base].same_training_as}' instead")
        return self


def optional_columns() -> list[str]:
    """What ``extra_metrics`` may name: every summary metric of ``longtail.metrics``, and the early-stopping epoch."""
    from ..metrics import SUMMARY_METRICS as METRICS

    return [key for key, _ in METRICS] + ["stopped_epoch"]


def load_bench(path: str | Path) -> BenchSpec:
    from ..core.config import format_validation_error

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"benchmark file '{p}' not found; pass an existing YAML file with -c (see benchmarks/)")
    try:
        return BenchSpec.model_validate(yaml.safe_load(p.read_text()) or {})
    except ValidationError as e:
        msg = format_validation_error(e, str(p))
        raise ConfigError(msg) from None


def cells(spec: BenchSpec, only: list[str] | None = None, seeds: list[int] | None = None, datasets: list[str] | None = None) -> list[tuple[str, str, int]]:
    from ..core.errors import did_you_mean

    for option, what, chosen, known in (("--only", "method", only, spec.methods), ("--datasets", "dataset", datasets, spec.datasets)):
        unknown = [name for name in (chosen or []) if name not in known]
        if unknown:
            raise ConfigError(f"{option}: unknown {what} '{unknown[0]}'{did_you_mean(unknown[0], known)}; {what}s: {', '.join(known)}")
    methods = [m for m in spec.methods if not only or m in only]
    chosen_seeds = [s for s in spec.seeds if seeds is None or s in seeds]
    return [(d, m, s) for d in spec.datasets if not datasets or d in datasets for m in methods for s in chosen_seeds]


def with_training_cells(spec: BenchSpec, todo: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """``todo`` with the cells whose training a selected cell re-uses (``same_training_as``) placed before it."""
    out: list[tuple[str, str, int]] = []
    for dataset, method, seed in todo:
        base = spec.methods[method].same_training_as
        if base is not None and (dataset, base, seed) not in out:
            out.append((dataset, base, seed))
        if (dataset, method, seed) not in out:
            out.append((dataset, method, seed))
    return out


def cell_dir(spec: BenchSpec, dataset: str, method: str, seed: int) -> Path:
    prefix = "" if list(spec.datasets) == ["default"] else f"{dataset}-"
    return Path(spec.output_dir) / f"{prefix}{method}-s{seed}"


def cell_overrides(spec: BenchSpec, dataset: str, method: str, seed: int) -> list[str]:
    run_dir = cell_dir(spec, dataset, method, seed)
    m = spec.methods[method]
    return [*spec.overrides, *spec.datasets[dataset], *m.overrides, f"seed={seed}", f"name={run_dir.name}", f"output_dir={run_dir.parent}"]


def cell_config(spec: BenchSpec, dataset: str, method: str, seed: int) -> Any:
    from ..catalog.check import load_config

    return load_config(spec.methods[method].config, cell_overrides(spec, dataset, method, seed))


def check_same_training(spec: BenchSpec, dataset: str, method: str, seed: int) -> None:
    """Refuse a ``same_training_as`` whose two configs would train different networks."""
    from ..core.config import to_plain

    base = spec.methods[method].same_training_as
    assert base is not None
    mine, theirs = to_plain(cell_config(spec, dataset, method, seed)), to_plain(cell_config(spec, dataset, base, seed))
    differ = sorted(k for k in mine.keys() | theirs.keys() if k not in AFTER_TRAINING + RUN_IDENTITY and mine.get(k) != theirs.get(k))
    if differ:
        raise ConfigError(f"benchmark method '{method}': same_training_as '{base}' needs configs that differ only in "
                          f"{' and '.join(AFTER_TRAINING)}, but they also differ in {', '.join(differ)}; remove same_training_as or align the configs")
    if mine.get("spbl") is not None:
        raise ConfigError(f"benchmark method '{method}': SPBL runs cannot share training (same_training_as '{base}'); remove same_training_as")


def run_cell(spec: BenchSpec, dataset: str, method: str, seed: int, on_epoch: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """Train (or resume, or skip) one cell and return its CSV row; ``on_epoch`` hears every finished epoch."""
    from ..training.run import train

    run_dir = cell_dir(spec, dataset, method, seed)
    m = spec.methods[method]
    if not (run_dir / rundir.RESULTS).is_file():
        if (run_dir / rundir.LAST).is_file():
            train(resume=run_dir, on_epoch=on_epoch)
        elif m.same_training_as is not None:
            copy_training(spec, dataset, method, seed)
            train(resume=run_dir, on_epoch=on_epoch)  # every epoch is done: the engine only evaluates
        else:
            train(m.config, cell_overrides(spec, dataset, method, seed), overwrite=True, on_epoch=on_epoch)
    return row_of(run_dir, dataset, method, seed, m.posthoc, spec.extra_metrics)


def copy_training(spec: BenchSpec, dataset: str, method: str, seed: int) -> None:
    """Start a ``same_training_as`` cell: the trained cell's directory (checkpoints, metrics, splits) without
    its evaluation, under this method's config. The copy is made aside and renamed into place, so a cell
    directory is either absent or complete. Its last checkpoint carries the training's wall time, which
    the cell's ``train_seconds`` then includes (run_clock.py)."""
    from ..core.config import dump

    base = spec.methods[method].same_training_as
    assert base is not None
    source = cell_dir(spec, dataset, base, seed)
    if not (source / rundir.RESULTS).is_file():
        raise LongtailError(f"cell {cell_label(spec, dataset, method, seed)} re-uses the training of {cell_label(spec, dataset, base, seed)}, "
                            f"but '{source}' holds no finished run; run that cell first (--only {base}), or, where only its CSV row "
                            f"is left, delete that row from {spec.results} so that it trains again")
    target = cell_dir(spec, dataset, method, seed)
    aside = target.with_name(f".{target.name}.copying")
    shutil.rmtree(aside, ignore_errors=True)  # an earlier copy cut short
    shutil.copytree(source, aside, ignore=shutil.ignore_patterns(*EVALUATION_OUTPUTS))
    (aside / rundir.CONFIG).write_text(dump(cell_config(spec, dataset, method, seed)))
    if target.exists():  # a cell directory without last.pt holds nothing to keep
        shutil.rmtree(target)
    os.replace(aside, target)


def cell_epochs(spec: BenchSpec, dataset: str, method: str, seed: int) -> tuple[int, int]:
    """(epochs the cell trains in all, epochs already in its metrics.jsonl): what its ETA is made of."""
    if spec.methods[method].same_training_as is not None:
        return 0, 0  # it trains nothing
    run_dir = cell_dir(spec, dataset, method, seed)
    cfg = cell_config(spec, dataset, method, seed)
    total = sum(s.epochs for s in cfg.resolved_stages()) * (1 + len(cfg.spbl.add_ratios) if cfg.spbl is not None else 1)
    logs = [run_dir / rundir.METRICS, *sorted((run_dir / rundir.PACES).glob(f"*/{rundir.METRICS}"))] if run_dir.is_dir() else []
    done = sum(1 for log in logs if log.is_file() for r in rundir.read_jsonl(log) if "train_loss" in r)
    return total, min(done, total)


def row_of(run_dir: Path, dataset: str, method: str, seed: int, posthoc: bool, extra: list[str] | None = None) -> dict[str, Any]:
    res = rundir.read_json(run_dir / rundir.RESULTS)
    key = "test_posthoc" if posthoc and "test_posthoc" in res else ("test" if "test" in res else "val")
    metrics = res[key]
    row = {"dataset": dataset, "method": method, "seed": seed, "run_dir": str(run_dir)}
    for col in [*COLUMNS, *(extra or [])]:
        if col in metrics:
            row[col] = metrics[col]
    if "stopped_epoch" in (extra or []):
        row["stopped_epoch"] = res.get("stopped_epoch")
    row.update(train_seconds=res.get("train_seconds"), epochs=res.get("epochs"), best_epoch=res.get("best_epoch"))
    row["val_balanced_accuracy"] = validation_score(res, posthoc)
    row.update(provenance_of(run_dir))
    return row


def provenance_of(run_dir: Path) -> dict[str, str]:
    """The PROVENANCE fields of a run, from its environment.json (empty when it has none)."""
    env_file = run_dir / rundir.ENVIRONMENT
    if not env_file.is_file():
        return {}
    env = rundir.read_json(env_file)
    m = env.get("machine", {})
    rev = str(env.get("git_revision") or "unknown")
    return {
        "git_revision": rev[:12] + ("+dirty" if rev.endswith("+dirty") else ""),  # a run of uncommitted code says so
        "torch": str(env.get("packages", {}).get("torch")),
        "machine": f"{m.get('processor')}, {m.get('cpu_count')} CPUs, {m.get('torch_threads')} torch threads, CUDA: {m.get('cuda') or 'none'}",
        "command": str(env.get("command")),
    }


def recorded_rows(spec: BenchSpec) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Rows of the grid's results CSV by cell: a finished cell whose run directory is gone (a fresh clone
    of the repository, where benchmarks/runs is not committed) keeps its row and is not trained again."""
    path = Path(spec.results)
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = {}
    for r in rows:
        row: dict[str, Any] = {k: (None if v == "" else v) for k, v in r.items()}
        row["seed"] = int(row["seed"])
        out[(row["dataset"], row["method"], row["seed"])] = row
    return out


def validation_score(res: dict[str, Any], posthoc: bool) -> float | None:
    """Validation balanced accuracy of what the row reports (after the post-hoc correction when it is used).

    This, never a test number, is what picks "the best recipe" of a grid.
    """
    chosen = res.get("posthoc", {}).get("logit_adjust") or res.get("posthoc", {}).get("tau_norm")
    if posthoc and chosen and chosen.get("metric") == "balanced_accuracy":
        return chosen.get("val_score")
    return res.get("val", {}).get("balanced_accuracy")


def run(spec: BenchSpec, only: list[str] | None = None, seeds: list[int] | None = None, datasets: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the selected cells, then rewrite the CSV and summaries from every finished cell of the grid."""
    todo = with_training_cells(spec, cells(spec, only, seeds, datasets))
    for dataset, method, seed in todo:  # before any training: a mismatch would otherwise surface hours later
        if spec.methods[method].same_training_as is not None:
            check_same_training(spec, dataset, method, seed)
    recorded = recorded_rows(spec)
    finished = [c for c in todo if (cell_dir(spec, *c) / rundir.RESULTS).is_file() or c in recorded]
    if finished:
        print(f"{len(finished)} of {len(todo)} selected cells are done and skipped: {', '.join(cell_label(spec, *c) for c in finished)}", flush=True)
    waiting = [c for c in todo if c not in finished]
    progress = GridProgress([Cell(progress_label(spec, *c), *cell_epochs(spec, *c)) for c in waiting])
    for i, (dataset, method, seed) in enumerate(waiting):
        progress.start_cell(i)
        run_cell(spec, dataset, method, seed, on_epoch=progress)
        progress.finish_cell()
    rows = collect(spec, recorded)
    write_outputs(spec, rows)
    return rows


def cell_label(spec: BenchSpec, dataset: str, method: str, seed: int) -> str:
    return f"{method}/seed {seed}" if list(spec.datasets) == ["default"] else f"{dataset}/{method}/seed {seed}"


def progress_label(spec: BenchSpec, dataset: str, method: str, seed: int) -> str:
    base = spec.methods[method].same_training_as
    label = cell_label(spec, dataset, method, seed)
    return label if base is None else f"{label} (evaluates the training of {cell_label(spec, dataset, base, seed)})"


def collect(spec: BenchSpec, recorded: dict[tuple[str, str, int], dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One row per finished cell: from its run directory, else from the CSV row ``recorded`` keeps."""
    recorded = recorded_rows(spec) if recorded is None else recorded
    rows = []
    for dataset, method, seed in cells(spec):
        run_dir = cell_dir(spec, dataset, method, seed)
        if (run_dir / rundir.RESULTS).is_file():
            rows.append(row_of(run_dir, dataset, method, seed, spec.methods[method].posthoc, spec.extra_metrics))
        elif (dataset, method, seed) in recorded:
            rows.append(recorded[(dataset, method, seed)])
    return rows


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value: one seed has no spread to report)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def format_mean_std(mean: float, std: float | None, digits: int = 4) -> str:
    """'mean ± std', or the mean alone where there is no spread (one seed): how every grid table writes a cell."""
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def summarise(rows: list[dict[str, Any]], extra: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per (dataset, method): mean ± std over seeds of each summary metric (and the ``extra`` columns)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["method"]), []).append(r)
    out = []
    for (dataset, method), rs in groups.items():
        entry: dict[str, Any] = {"dataset": dataset, "method": method, "seeds": len(rs)}
        for metric in [*SUMMARY_METRICS, *(extra or []), "train_seconds"]:
            vals = [float(r[metric]) for r in rs if r.get(metric) is not None]
            if vals:
                entry[metric] = mean_std(vals)
        out.append(entry)
    return out


def format_summary(summary: list[dict[str, Any]], fmt: str = "markdown", extra: list[str] | None = None) -> str:
    headers = ["dataset", "method", "seeds", *SUMMARY_METRICS, *(extra or []), "train_seconds"]

    def cell(e: dict[str, Any], h: str) -> str:
        v = e.get(h)
        if isinstance(v, tuple):
            return format_mean_std(*v, digits=1 if h in ("train_seconds", "stopped_epoch") else 4)
        return "n/a" if v is None else str(v)

    if fmt == "html":
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(cell(e, h))}</td>" for h in headers) + "</tr>" for e in summary)
        return f"<table border='1' cellpadding='4'><tr>{head}</tr>{body}</table>"
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(e, h) for h in headers) + " |" for e in summary]
    return "\n".join(lines)


def write_outputs(spec: BenchSpec, rows: list[dict[str, Any]]) -> None:
    csv_path = Path(spec.results)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*COLUMNS[:-1], *spec.extra_metrics, COLUMNS[-1], *PROVENANCE], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    summary = summarise(rows, spec.extra_metrics)
    table = format_summary(summary, extra=spec.extra_metrics)
    provenance = describe_provenance(rows)
    csv_path.with_suffix(".md").write_text(
        f"# {spec.name}\n\nMean ± sample std over seeds (the mean alone for one seed); test split, best validation checkpoint "
        f"(val_balanced_accuracy: the validation score, which is what selects among methods).\n\n{table}\n\n{provenance}\n"
    )
    csv_path.with_suffix(".html").write_text(f"<html><body><h1>{html.escape(spec.name)}</h1>{format_summary(summary, 'html', spec.extra_metrics)}</body></html>")
    print(table)
    print(f"\nrows: {csv_path}  summary: {csv_path.with_suffix('.md')}")


def describe_provenance(rows: list[dict[str, Any]]) -> str:
    """Commits, package versions, machines and commands of the runs behind a table (the rows' PROVENANCE)."""
    names = {"git_revision": "git revision", "torch": "torch", "machine": "machine", "command": "command"}
    seen: dict[str, set[str]] = {label: set() for label in names.values()}
    for r in rows:
        for key, label in names.items():
            if r.get(key):
                seen[label].add(str(r[key]))
    return "\n".join(f"- {k}: {'; '.join(sorted(v))}" for k, v in seen.items() if v)


def cmd_bench(args: argparse.Namespace) -> int:
    spec = load_bench(args.config)
    only = [m for m in args.only.split(",") if m] if args.only else None
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    datasets = [d for d in args.datasets.split(",") if d] if args.datasets else None
    if not cells(spec, only, seeds, datasets):
        raise LongtailError("the selection has no cell; check --only, --seeds and --datasets against the benchmark file")
    run(spec, only, seeds, datasets)
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "bench", help="run a methods x seeds benchmark grid",
        description="Run every (method, seed) cell of a grid YAML at one budget, printing a line per finished epoch "
                    "(validation score, elapsed time, ETA of the run and of the grid), then write the CSV rows and the "
                    "mean ± std summaries. A rerun skips finished cells and resumes interrupted ones.")
    p.add_argument("-c", "--config", required=True, help="benchmark YAML (see benchmarks/)")
    p.add_argument("--only", help="comma-separated method names to run")
    p.add_argument("--seeds", help="comma-separated seeds to run")
    p.add_argument("--datasets", help="comma-separated dataset names (the grid's datasets:) to run")
    p.set_defaults(func=cmd_bench)
