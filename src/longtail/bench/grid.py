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

A finished cell counts as done only for the config it was made with: every CSV row carries the
cell's :func:`config_hash`, and a cell whose run directory or row was made with another config (the
budget or an override changed) is run again, its old directory replaced only once the new run
succeeds. The summaries average only cells made with the config the grid gives now.

``folds: K`` (or ``longtail bench --folds K``) makes it a k-fold grid: every (dataset, method, seed) runs
once per fold, the cell key gaining the fold as a fourth element (run directory ``<method>-s<seed>-f<i>``,
CSV column ``fold``, overrides ``data.split.kind=kfold data.split.folds=K data.split.fold=i``), and the
summaries average over folds and seeds. Holdout cells keep their 3-element key and an empty ``fold``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import html
import json
import logging
import os
import shutil
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .. import rundir
from ..core.errors import ConfigError, LongtailError, did_you_mean
from ..core.schema import MAX_FOLDS, Config
from .archive import archive_root
from .paired import paired_against, paired_cell
from .progress import Cell, GridProgress

log = logging.getLogger("longtail")

COLUMNS = [
    "dataset", "method", "seed", "fold", "accuracy", "balanced_accuracy", "macro_f1", "gmean", "mauc", "ece",
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
#: what a run writes after training; a cell that shares another's training starts from a copy without these (and without the
#: trained cell's MLflow record, tracking.json: the copy is another cell, logged as a run of its own)
EVALUATION_OUTPUTS = (rundir.RESULTS, rundir.POSTHOC, rundir.PREDICTIONS, "report.html", "report.md", "report_files", rundir.CARD, "tracking.json")
#: the CSV column naming the config a row was made with (:func:`config_hash`); empty in rows written before it
HASH_COLUMN = "config_hash"
#: config keys that change how a cell runs, never what it computes, so changing one reruns no cell: the run's
#: name and folder, the progress bar, TensorBoard, CPU threads, DataLoader workers, the decode cache, where the training images
#: live (data.device_resident: the same batches, bit for bit), the data's licence (the model card's text) and where the run is
#: tracked (MLflow)
HASH_IGNORES = ("name", "output_dir", "train.progress", "train.tensorboard", "train.threads", "data.num_workers", "data.cache", "data.cache_dir",
                "data.device_resident", "data.license", "tracking")
#: what a CSV row needs to name its cell; a row without them was cut short (a killed write) or edited
ROW_KEYS = ("dataset", "method", "seed")
#: a cell: (dataset, method, seed) on the holdout split, (dataset, method, seed, fold) in a k-fold grid; every
#: function taking a cell as ``*cell`` has ``fold: int | None = None`` after the seed
CellKey = tuple[str, str, int] | tuple[str, str, int, int]


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
    folds: int | None = Field(None, description="k-fold: every cell runs once per fold 0..folds-1 (data.split.kind kfold); "
                                                "`bench --folds` overrides it; null: the configs' own split")

    @field_validator("folds")
    @classmethod
    def _folds_in_range(cls, v: int | None) -> int | None:
        problem = None if v is None else folds_problem(v)
        if problem:
            raise ValueError(f"{problem}; set folds: 2 or more (e.g. 5), or remove it for the configs' holdout split")
        return v

    @field_validator("extra_metrics")
    @classmethod
    def _known_metrics(cls, v: list[str]) -> list[str]:
        known = optional_columns()
        for name in v:
            if name not in known and not (name.startswith(WORST_GROUP) and len(name) > len(WORST_GROUP)):
                raise ValueError(f"'{name}' is not an optional column{did_you_mean(name, known)}; choose from: {', '.join(known)}")
        return [name for name in v if name not in COLUMNS]

    paired_against: str | None = Field(None, description="a method of this grid: every other method's mean paired difference of paired_metric "
                                                         "against it over seeds, with a two-level bootstrap interval (bench/paired.py)")
    paired_metric: str = Field("balanced_accuracy", description="the metric of the paired_against columns (a summary metric)")

    @model_validator(mode="after")
    def _paired_against_a_method(self) -> BenchSpec:
        from ..metrics.weighted import WEIGHTED_METRICS

        if self.paired_against is not None and self.paired_against not in self.methods:
            raise ValueError(f"paired_against '{self.paired_against}' is not a method of this grid; choose from: {', '.join(self.methods)}")
        if self.paired_metric not in WEIGHTED_METRICS:
            raise ValueError(f"paired_metric '{self.paired_metric}' is not a summary metric; choose from: {', '.join(WEIGHTED_METRICS)}")
        return self

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


def folds_problem(folds: int) -> str | None:
    """Why ``folds`` is not a k-fold count (2..MAX_FOLDS), or None when it is one."""
    if isinstance(folds, bool) or not 2 <= folds <= MAX_FOLDS:
        return f"{folds} is not a number of folds: k-fold needs 2 to {MAX_FOLDS}"
    return None


#: ``extra_metrics: [worst_group_<column>]``: the balanced accuracy of the worst reported group of an eval.subgroups column
WORST_GROUP = "worst_group_"


def optional_columns() -> list[str]:
    """What ``extra_metrics`` may name: every summary metric of ``longtail.metrics``, the early-stopping epoch, and
    ``worst_group_<column>`` for any eval.subgroups column."""
    from ..metrics import SUMMARY_METRICS as METRICS

    return [key for key, _ in METRICS] + ["stopped_epoch", f"{WORST_GROUP}<column>"]


def worst_group(res: dict[str, Any], column: str) -> float | None:
    """The balanced accuracy of the worst reported group of ``column`` in results.json's subgroup tables (None: no such table)."""
    for table in (res.get("subgroups") or {}).get("tables", []):
        if table["column"] == column and table["worst"] is not None:
            return next(r["balanced_accuracy"] for r in table["groups"] if r["group"] == table["worst"])
    return None


def load_bench(path: str | Path) -> BenchSpec:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"benchmark file '{p}' not found; pass an existing YAML file with -c (see benchmarks/)")
    try:
        return BenchSpec.model_validate(read_mapping(p))
    except ValidationError as e:
        raise ConfigError(bench_validation_error(e, str(p))) from None


def read_mapping(p: Path) -> dict[str, Any]:
    """The benchmark file's YAML mapping: a file that does not parse or holds no mapping is a one-line error naming it."""
    from ..core.config import parse_yaml, read_config_text

    text = read_config_text(p, missing=f"benchmark file '{p}' not found; pass a YAML file with -c (see benchmarks/)",
                            fix="pass a YAML file with -c (see benchmarks/)")
    try:
        data = parse_yaml(text, str(p))
    except yaml.YAMLError as e:  # worded as core.config.load_raw words a recipe's
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}: not valid YAML{where}; fix the syntax ({getattr(e, 'problem', e)})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"benchmark file '{p}' cannot be read ({e}); pass a UTF-8 YAML file with -c (see benchmarks/)") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping (name:, output_dir:, results:, methods:, ...), not a {type(data).__name__}; "
                          "see benchmarks/ for grids")
    return data


def bench_validation_error(err: ValidationError, source: str) -> str:
    """One problem as one line. An unknown key comes first (a misspelt ``methodz`` also leaves ``methods`` missing)
    and lists the keys of its own section (the grid's or a method's)."""
    from ..core.config import format_validation_error

    unknown = next((e for e in err.errors() if e["type"] == "extra_forbidden"), None)
    if unknown is None:
        return format_validation_error(err, source)
    loc = [str(x) for x in unknown["loc"]]
    valid = sorted((MethodSpec if loc[0] == "methods" else BenchSpec).model_fields)
    return f"{source}: unknown key '{'.'.join(loc)}'{did_you_mean(loc[-1], valid)}; valid keys here: {', '.join(valid)}"


def cells(spec: BenchSpec, only: list[str] | None = None, seeds: list[int] | None = None, datasets: list[str] | None = None) -> list[CellKey]:
    """The selected cells in the grid's order (datasets, methods, seeds, then folds when ``spec.folds`` is set)."""
    for option, what, chosen, known in (("--only", "method", only, spec.methods), ("--datasets", "dataset", datasets, spec.datasets)):
        unknown = [name for name in (chosen or []) if name not in known]
        if unknown:
            raise ConfigError(f"{option}: unknown {what} '{unknown[0]}'{did_you_mean(unknown[0], known)}; {what}s: {', '.join(known)}")
    unknown_seeds = [s for s in (seeds or []) if s not in spec.seeds]
    if unknown_seeds:
        raise ConfigError(f"--seeds: seed {unknown_seeds[0]} is not a seed of this grid; seeds: {', '.join(map(str, spec.seeds))}")
    methods = [m for m in spec.methods if not only or m in only]
    chosen_seeds = [s for s in spec.seeds if seeds is None or s in seeds]
    chosen = [(d, m, s) for d in spec.datasets if not datasets or d in datasets for m in methods for s in chosen_seeds]
    folds: list[int | None] = [None] if spec.folds is None else list(range(spec.folds))
    return [(d, m, s) if f is None else (d, m, s, f) for d, m, s in chosen for f in folds]


def with_training_cells(spec: BenchSpec, todo: list[CellKey]) -> list[CellKey]:
    """``todo`` with the cells whose training a selected cell re-uses (``same_training_as``, same seed and fold) placed before it."""
    out: list[CellKey] = []
    for cell in todo:
        base = spec.methods[cell[1]].same_training_as
        if base is not None and (trained := training_cell(cell, base)) not in out:
            out.append(trained)
        if cell not in out:
            out.append(cell)
    return out


def training_cell(cell: CellKey, base: str) -> CellKey:
    """The cell of method ``base`` with ``cell``'s dataset, seed and fold: the one whose training ``cell`` re-uses."""
    return (cell[0], base, *cell[2:])  # type: ignore[return-value]


def row_key(row: dict[str, Any]) -> CellKey:
    """The cell a results row belongs to: a row with an empty (or no) ``fold`` is a holdout cell."""
    fold = row.get("fold")
    key = (row["dataset"], row["method"], int(row["seed"]))
    return key if fold is None or fold == "" else (*key, int(fold))


def cell_dir(spec: BenchSpec, dataset: str, method: str, seed: int, fold: int | None = None) -> Path:
    prefix = "" if list(spec.datasets) == ["default"] else f"{dataset}-"
    return Path(spec.output_dir) / f"{prefix}{method}-s{seed}{'' if fold is None else f'-f{fold}'}"


def cell_overrides(spec: BenchSpec, dataset: str, method: str, seed: int, fold: int | None = None) -> list[str]:
    """The cell's overrides: the grid's, the dataset's, the method's, then its fold's split (last, so it is the one used) and its identity."""
    run_dir = cell_dir(spec, dataset, method, seed, fold)
    m = spec.methods[method]
    split = [] if fold is None else ["data.split.kind=kfold", f"data.split.folds={spec.folds}", f"data.split.fold={fold}"]
    return [*spec.overrides, *spec.datasets[dataset], *m.overrides, *split, f"seed={seed}", f"name={run_dir.name}", f"output_dir={run_dir.parent}"]


def cell_config(spec: BenchSpec, dataset: str, method: str, seed: int, fold: int | None = None) -> Config:
    from ..catalog.check import load_config

    return load_config(spec.methods[method].config, cell_overrides(spec, dataset, method, seed, fold))


def config_hash(cfg: Config) -> str:
    """A short, stable hash of what a cell computes: its resolved config as canonical JSON, without HASH_IGNORES.

    Keys left at their default are left out too, so a longtail that adds a config key (with a default)
    does not make every recorded cell look changed; what the code does with a config is the rows'
    ``git_revision``, not this hash."""
    plain = cfg.model_dump(mode="json", exclude_defaults=True)
    for dotted in HASH_IGNORES:
        *parents, key = dotted.split(".")
        section = plain
        for part in parents:
            section = section.get(part) or {}
        section.pop(key, None)
    return hashlib.sha256(json.dumps(plain, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def run_dir_hash(run_dir: Path) -> str | None:
    """The :func:`config_hash` of the config.yaml a run directory was made with, read by this longtail (keys
    added since count at their default); None when it has none or it no longer reads as a config."""
    from ..catalog.check import load_config

    path = run_dir / rundir.CONFIG
    if not path.is_file():
        return None
    try:
        return config_hash(load_config(path))
    except (LongtailError, ValueError):  # ValueError: not UTF-8 text
        return None


def made_with(spec: BenchSpec, cell: CellKey, row: dict[str, Any] | None) -> tuple[str | None, Path | None]:
    """The config hash behind what the grid holds for ``cell``, and the file it was read from: the run
    directory's config.yaml when the directory holds the result (or the CSV row names no hash), else the
    CSV row's hash; (None, None) when neither says (no run directory, and no row or a row without a hash)."""
    config = cell_dir(spec, *cell) / rundir.CONFIG
    if config.is_file() and (row is None or (config.parent / rundir.RESULTS).is_file() or not row.get(HASH_COLUMN)):
        return run_dir_hash(config.parent), config
    if row is not None and row.get(HASH_COLUMN):
        return row[HASH_COLUMN], Path(spec.results)
    return None, None


def cell_state(spec: BenchSpec, cell: CellKey, row: dict[str, Any] | None, current: str) -> tuple[str, str]:
    """What :func:`run` does with a cell whose config hashes to ``current``, and why: ``done`` (skipped),
    ``unchecked`` (a CSV row that names no config and has no run directory to check: kept, skipped),
    ``rerun`` (what is there was made with another config: run afresh, the why is its INFO line) or
    ``run`` (train it, or resume it from its last checkpoint)."""
    finished = row is not None or (cell_dir(spec, *cell) / rundir.RESULTS).is_file()
    made, where = made_with(spec, cell, row)
    if where is None:
        return ("unchecked" if finished else "run"), ""
    if made == current:
        return ("done" if finished else "run"), ""
    found = f"records config hash {made}" if made else "no longer reads as a config"
    return "rerun", f"{cell_label(spec, *cell)} is run again: '{where}' {found}, the benchmark file now gives {current} (its budget or overrides changed)"


def check_same_training(spec: BenchSpec, dataset: str, method: str, seed: int, fold: int | None = None) -> None:
    """Refuse a ``same_training_as`` whose two configs would train different networks."""
    from ..core.config import to_plain

    base = spec.methods[method].same_training_as
    assert base is not None
    mine, theirs = to_plain(cell_config(spec, dataset, method, seed, fold)), to_plain(cell_config(spec, dataset, base, seed, fold))
    differ = sorted(k for k in mine.keys() | theirs.keys() if k not in AFTER_TRAINING + RUN_IDENTITY and mine.get(k) != theirs.get(k))
    if differ:
        raise ConfigError(f"benchmark method '{method}': same_training_as '{base}' needs configs that differ only in "
                          f"{' and '.join(AFTER_TRAINING)}, but they also differ in {', '.join(differ)}; remove same_training_as or align the configs")
    if mine.get("spbl") is not None:
        raise ConfigError(f"benchmark method '{method}': SPBL runs cannot share training (same_training_as '{base}'); remove same_training_as")


def run_cell(spec: BenchSpec, dataset: str, method: str, seed: int, fold: int | None = None,
             on_epoch: Callable[[Any], None] | None = None, fresh: bool = False) -> dict[str, Any]:
    """Train (or resume, or skip) one cell and return its CSV row; ``on_epoch`` hears every finished epoch.

    ``fresh``: what the cell's directory holds was made with another config, so it is neither skipped nor
    resumed but replaced (through ``--overwrite``'s staging swap: it stays as it is unless the new run succeeds)."""
    from ..training.run import train

    run_dir = cell_dir(spec, dataset, method, seed, fold)
    m = spec.methods[method]
    if fresh or not (run_dir / rundir.RESULTS).is_file():
        if not fresh and (run_dir / rundir.LAST).is_file():
            train(resume=run_dir, on_epoch=on_epoch)
        elif m.same_training_as is not None:
            share_training(spec, dataset, method, seed, on_epoch, fold=fold)
        else:
            train(m.config, cell_overrides(spec, dataset, method, seed, fold), overwrite=True, on_epoch=on_epoch)
    return row_of(run_dir, dataset, method, seed, m.posthoc, spec.extra_metrics, fold=fold)


def share_training(spec: BenchSpec, dataset: str, method: str, seed: int, on_epoch: Callable[[Any], None] | None = None,
                   fold: int | None = None) -> None:
    """Make a ``same_training_as`` cell: evaluate a copy of the trained cell beside the cell's place, then move
    it in, so a cell directory is either absent or complete and an older cell there is replaced only once
    the new one succeeds."""
    from ..training.run import train

    work = copy_training(spec, dataset, method, seed, fold)
    try:
        train(resume=work, on_epoch=on_epoch)  # every epoch is done: the engine only evaluates
    except BaseException:
        rundir.discard(work)
        raise
    target = cell_dir(spec, dataset, method, seed, fold)
    install(work, target)
    write_cell_report(target)


def install(work: Path, target: Path) -> None:
    """Move the finished folder ``work`` to ``target``; an older cell there is swapped out, then deleted (rundir.commit)."""
    if target.exists():
        rundir.commit(work, target)
    else:
        os.replace(work, target)


def write_cell_report(run_dir: Path) -> None:
    """The report names its folder: write it again once the cell is in place (a failure costs the report, never the cell)."""
    try:
        from ..evaluation.report import write_report

        write_report(run_dir)
    except Exception as e:
        log.warning("cell '%s' finished but its report could not be written (%s); retry with `longtail report %s`", run_dir, e, run_dir)


def copy_training(spec: BenchSpec, dataset: str, method: str, seed: int, fold: int | None = None) -> Path:
    """Start a ``same_training_as`` cell: the trained cell's directory (checkpoints, metrics, splits) without
    its evaluation, under this method's config, copied to ``.<cell>.copying`` beside the cell's place (the
    returned folder). Its last checkpoint carries the training's wall time, which the cell's
    ``train_seconds`` then includes (run_clock.py)."""
    from ..core.config import dump

    base = spec.methods[method].same_training_as
    assert base is not None
    source = cell_dir(spec, dataset, base, seed, fold)
    if not (source / rundir.RESULTS).is_file():
        raise LongtailError(f"cell {cell_label(spec, dataset, method, seed, fold)} re-uses the training of {cell_label(spec, dataset, base, seed, fold)}, "
                            f"but '{source}' holds no finished run; run that cell first (--only {base}), or, where only its CSV row "
                            f"is left, delete that row from {spec.results} so that it trains again")
    target = cell_dir(spec, dataset, method, seed, fold)
    aside = target.with_name(f".{target.name}.copying")
    rundir.discard(aside)  # an earlier copy cut short
    try:
        shutil.copytree(source, aside, ignore=shutil.ignore_patterns(*EVALUATION_OUTPUTS))
    except OSError as e:
        rundir.discard(aside)
        raise rundir.write_error(aside, e) from None
    rundir.atomic_write_bytes(aside / rundir.CONFIG, dump(cell_config(spec, dataset, method, seed, fold)).encode())
    return aside


def cell_epochs(spec: BenchSpec, dataset: str, method: str, seed: int, fold: int | None = None, fresh: bool = False) -> tuple[int, int]:
    """(epochs the cell trains in all, epochs already in its metrics.jsonl; none for a ``fresh`` cell): what its ETA is made of."""
    if spec.methods[method].same_training_as is not None:
        return 0, 0  # it trains nothing
    run_dir = cell_dir(spec, dataset, method, seed, fold)
    cfg = cell_config(spec, dataset, method, seed, fold)
    total = sum(s.epochs for s in cfg.resolved_stages()) * (1 + len(cfg.spbl.add_ratios) if cfg.spbl is not None else 1)
    logs = [run_dir / rundir.METRICS, *sorted((run_dir / rundir.PACES).glob(f"*/{rundir.METRICS}"))] if run_dir.is_dir() and not fresh else []
    done = sum(1 for log in logs if log.is_file() for r in rundir.read_jsonl(log) if "train_loss" in r)
    return total, min(done, total)


def row_of(run_dir: Path, dataset: str, method: str, seed: int, posthoc: bool, extra: list[str] | None = None,
           fold: int | None = None) -> dict[str, Any]:
    res = rundir.read_json(run_dir / rundir.RESULTS)
    key = "test_posthoc" if posthoc and "test_posthoc" in res else ("test" if "test" in res else "val")
    metrics = res[key]
    row = {"dataset": dataset, "method": method, "seed": seed, "fold": fold, "run_dir": str(run_dir)}
    for col in [*COLUMNS, *(extra or [])]:
        if col in metrics:
            row[col] = metrics[col]
    if "stopped_epoch" in (extra or []):
        row["stopped_epoch"] = res.get("stopped_epoch")
    for col in extra or []:
        if col.startswith(WORST_GROUP):
            row[col] = worst_group(res, col[len(WORST_GROUP):])
    row.update(train_seconds=res.get("train_seconds"), epochs=res.get("epochs"), best_epoch=res.get("best_epoch"))
    row["val_balanced_accuracy"] = validation_score(res, posthoc)
    row[HASH_COLUMN] = run_dir_hash(run_dir)
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
        "machine": f"{m.get('cpu_model') or m.get('processor')}, {m.get('cpu_count')} CPUs, {m.get('torch_threads')} torch threads, CUDA: {m.get('cuda') or 'none'}",
        "command": str(env.get("command")),
    }


def recorded_rows(spec: BenchSpec) -> dict[CellKey, dict[str, Any]]:
    """Rows of the grid's results CSV by cell: a finished cell whose run directory is gone (a fresh clone
    of the repository, where benchmarks/runs is not committed) keeps its row and is not trained again."""
    path = Path(spec.results)
    if not path.is_file():
        return {}
    out, dropped = {}, 0
    for r in read_results(path):
        row = complete_row(r)
        if row is None:
            dropped += 1
        else:
            out[row_key(row)] = row
    if dropped:
        log.warning("'%s': %d row(s) cut short or malformed (a killed write or an edit) are dropped; their cells count as not run "
                    "unless their run directories hold results", path, dropped)
    return out


def read_results(path: Path) -> list[dict[str, Any]]:
    """The rows of a results CSV as csv.DictReader gives them; a file that is not such a CSV is a one-line error naming it."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise LongtailError(f"results file '{path}' cannot be read as a CSV ({e}); move it away (the finished cells' run directories "
                            "write it again) or point results: in the benchmark file elsewhere") from None
    missing = [key for key in ROW_KEYS if key not in (reader.fieldnames or ROW_KEYS)]
    if missing:
        raise LongtailError(f"results file '{path}' has no {', '.join(missing)} column, so it is not a longtail bench CSV; move it away "
                            "or point results: in the benchmark file elsewhere")
    return rows


def complete_row(r: dict[Any, Any]) -> dict[str, Any] | None:
    """A CSV row as the grid keeps it (empty fields as None, the seed and fold ints), or None when it was cut short or
    is malformed: fewer or more fields than the header, no dataset or method, a seed or fold that is not an integer.
    A CSV written before k-fold has no fold column: its rows are holdout cells."""
    if None in r or None in r.values():  # DictReader's marks of extra and missing fields
        return None
    row: dict[str, Any] = {k: (None if v == "" else v) for k, v in r.items()}
    try:
        row["seed"] = int(row["seed"])
        row["fold"] = None if row.get("fold") is None else int(row["fold"])
    except (TypeError, ValueError):
        return None
    return row if row["dataset"] and row["method"] else None


def validation_score(res: dict[str, Any], posthoc: bool) -> float | None:
    """Validation balanced accuracy of what the row reports (after the post-hoc correction when it is used).

    This, never a test number, is what picks "the best recipe" of a grid.
    """
    chosen = res.get("posthoc", {}).get("logit_adjust") or res.get("posthoc", {}).get("tau_norm")
    if posthoc and chosen and chosen.get("metric") == "balanced_accuracy":
        return chosen.get("val_score")
    return res.get("val", {}).get("balanced_accuracy")


def run(spec: BenchSpec, only: list[str] | None = None, seeds: list[int] | None = None, datasets: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the selected cells, then rewrite the CSV and summaries from every finished cell of the grid.

    A cell is done when what the grid holds for it was made with the config the grid gives now; one made
    with another config is run again (one INFO line each). Every config is read before any training."""
    todo = with_training_cells(spec, cells(spec, only, seeds, datasets))
    for c in todo:  # before any training: a mismatch would otherwise surface hours later
        if spec.methods[c[1]].same_training_as is not None:
            check_same_training(spec, *c)
    current = {c: config_hash(cell_config(spec, *c)) for c in cells(spec)}
    recorded = recorded_rows(spec)
    states = {c: cell_state(spec, c, recorded.get(c), current[c]) for c in todo}
    finished = [c for c in todo if states[c][0] in ("done", "unchecked")]
    if finished:
        print(f"{len(finished)} of {len(todo)} selected cells are done and skipped: {', '.join(cell_label(spec, *c) for c in finished)}", flush=True)
    report_unchecked(spec, [c for c in todo if states[c][0] == "unchecked"])
    fresh = {c for c in todo if states[c][0] == "rerun"}
    for c in todo:
        if c in fresh:
            log.info(states[c][1])
    waiting = [c for c in todo if c not in finished]
    progress = GridProgress([Cell(progress_label(spec, *c), *cell_epochs(spec, *c, fresh=c in fresh)) for c in waiting])
    with grid_tracking(spec, todo) as parent:  # tracking.mlflow: the cells' MLflow runs nest under one parent run of the grid
        for i, c in enumerate(waiting):
            progress.start_cell(i)
            run_cell(spec, *c, on_epoch=progress, fresh=c in fresh)
            progress.finish_cell()
            if i < len(waiting) - 1:  # the results so far, so that a grid stopped later keeps what finished
                publish(spec, recorded, current)
        rows = publish(spec, recorded, current)
        results = Path(spec.results)
        parent.log_files([results, results.with_suffix(".md"), results.with_suffix(".html")])
    return rows


def publish(spec: BenchSpec, recorded: dict[CellKey, dict[str, Any]], current: dict[CellKey, str]) -> list[dict[str, Any]]:
    """Collect every finished cell and rewrite the CSV and the summaries; the collected rows."""
    rows = collect(spec, recorded)
    write_outputs(spec, [*rows, *other_scheme_rows(spec, recorded)], current_rows(spec, rows, current))
    return rows


def grid_tracking(spec: BenchSpec, todo: list[CellKey]) -> Any:
    """The grid's MLflow parent run (a context manager), in the store of its first cell's recipe (its tracking section;
    untracked when it has none), recorded in the grid's output_dir so that a rerun nests under the same parent."""
    from ..tracking import grid_run

    tracking = cell_config(spec, *todo[0]).tracking if todo else None
    return grid_run(tracking, Path(spec.output_dir), spec.name)


def other_scheme_rows(spec: BenchSpec, recorded: dict[CellKey, dict[str, Any]]) -> list[dict[str, Any]]:
    """Recorded rows of this grid's cells under the other split scheme (holdout rows in a ``--folds`` run, fold rows in a
    holdout run): kept in the CSV, so that trying ``--folds`` never costs the holdout results, but out of the summaries."""
    kfold = spec.folds is not None
    return [r for key, r in recorded.items()
            if (len(key) == 4) != kfold and key[0] in spec.datasets and key[1] in spec.methods and key[2] in spec.seeds]


def report_unchecked(spec: BenchSpec, unchecked: list[CellKey]) -> None:
    """One WARNING for the kept rows that name no config (written before rows had a hash) and have no run directory."""
    if unchecked:
        log.warning("%d row(s) of '%s' carry no config hash (written by an older longtail) and have no run directory to check them "
                    "against, so they are kept as they are: %s; to run such a cell again, delete its row from '%s'",
                    len(unchecked), spec.results, ", ".join(cell_label(spec, *c) for c in unchecked), spec.results)


def current_rows(spec: BenchSpec, rows: list[dict[str, Any]], current: dict[CellKey, str]) -> list[dict[str, Any]]:
    """The rows the summaries average: cells made with the config the grid gives now, or that cannot tell (no hash).

    A cell made with another config (one left out of this run's --only / --seeds / --datasets) stays in the
    CSV but out of the summaries, said in one WARNING line: a method never averages two configs."""
    def stale(r: dict[str, Any]) -> bool:
        return bool(r.get(HASH_COLUMN)) and r[HASH_COLUMN] != current.get(row_key(r))

    left_out = [r for r in rows if stale(r)]
    if left_out:
        log.warning("%d finished cell(s) were made with another config than the benchmark file gives now and are left out of the "
                    "summary (their rows stay in '%s'): %s; run the bench again for them to bring them up to date", len(left_out),
                    spec.results, ", ".join(cell_label(spec, *row_key(r)) for r in left_out))
    return [r for r in rows if not stale(r)]


def cell_label(spec: BenchSpec, dataset: str, method: str, seed: int, fold: int | None = None) -> str:
    label = f"{method}/seed {seed}" if list(spec.datasets) == ["default"] else f"{dataset}/{method}/seed {seed}"
    return label if fold is None else f"{label}/fold {fold}"


def progress_label(spec: BenchSpec, dataset: str, method: str, seed: int, fold: int | None = None) -> str:
    base = spec.methods[method].same_training_as
    label = cell_label(spec, dataset, method, seed, fold)
    return label if base is None else f"{label} (evaluates the training of {cell_label(spec, dataset, base, seed, fold)})"


def collect(spec: BenchSpec, recorded: dict[CellKey, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One row per finished cell: from its run directory, else from the CSV row ``recorded`` keeps."""
    recorded = recorded_rows(spec) if recorded is None else recorded
    rows = []
    for c in cells(spec):
        dataset, method, seed, *fold = c
        run_dir = cell_dir(spec, *c)
        if (run_dir / rundir.RESULTS).is_file():
            rows.append(row_of(run_dir, dataset, method, seed, spec.methods[method].posthoc, spec.extra_metrics, fold=fold[0] if fold else None))
        elif c in recorded:
            rows.append(recorded[c])
    return rows


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value: one seed has no spread to report)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def format_mean_std(mean: float, std: float | None, digits: int = 4) -> str:
    """'mean ± std', or the mean alone where there is no spread (one seed): how every grid table writes a cell."""
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def summarise(rows: list[dict[str, Any]], extra: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per (dataset, method): mean ± std over its runs (seeds, and folds in a k-fold grid) of each summary
    metric (and the ``extra`` columns); ``runs`` counts them, ``folds`` (k-fold rows only) the distinct folds."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["method"]), []).append(r)
    out = []
    for (dataset, method), rs in groups.items():
        folds = {int(r["fold"]) for r in rs if r.get("fold") not in (None, "")}
        entry: dict[str, Any] = {"dataset": dataset, "method": method, "seeds": len({int(r["seed"]) for r in rs}), "runs": len(rs)}
        if folds:
            entry["folds"] = len(folds)
        for metric in [*SUMMARY_METRICS, *(extra or []), "train_seconds"]:
            vals = [float(r[metric]) for r in rs if r.get(metric) is not None]
            if vals:
                entry[metric] = mean_std(vals)
        out.append(entry)
    return out


#: the summary column of a k-fold grid: how many runs (folds x seeds) went into each mean
RUNS_COLUMN = "folds x seeds"


def paired_headers(baseline: str, metric: str) -> tuple[str, str]:
    """The two summary columns of ``paired_against``: the difference with its interval, and whether it excludes 0."""
    return f"{metric} - {baseline} [95% CI]", "CI excludes 0"


def format_summary(summary: list[dict[str, Any]], fmt: str = "markdown", extra: list[str] | None = None,
                   paired: tuple[str, str, dict[tuple[str, str], dict[str, Any]]] | None = None) -> str:
    """The summary as Markdown or HTML; with k-fold rows the ``seeds`` column becomes ``folds x seeds`` ("5 x 3 = 15").
    ``paired`` (baseline, metric, :func:`~longtail.bench.paired.paired_against`'s result) adds its two columns."""
    kfold = any("folds" in e for e in summary)
    diff_head, verdict_head = paired_headers(paired[0], paired[1]) if paired else ("", "")
    headers = ["dataset", "method", RUNS_COLUMN if kfold else "seeds", *SUMMARY_METRICS, *(extra or []),
               *([diff_head, verdict_head] if paired else []), "train_seconds"]

    def cell(e: dict[str, Any], h: str) -> str:
        if h == RUNS_COLUMN:
            return f"{e['folds']} x {e['seeds']} = {e['runs']}" if "folds" in e else f"holdout x {e['seeds']}"
        if paired and h in (diff_head, verdict_head):
            if e["method"] == paired[0]:
                return "baseline"
            diff, verdict = paired_cell(paired[2].get((e["dataset"], e["method"])))
            return diff if h == diff_head else verdict
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


def paired_note(spec: BenchSpec) -> str:
    """What the paired columns are, for the summary's Markdown."""
    several = len(spec.methods) > 2
    return (f" `{spec.paired_metric} - {spec.paired_against}`: the mean over seeds of each method's paired difference against "
            f"{spec.paired_against} trained with the same seed, with a 95% two-level bootstrap interval (seeds and test images "
            "resampled, docs/methods.md#across-seeds-in-bench--each-method-against-a-baseline); the p-value beside "
            + ("'CI excludes 0' is Holm-adjusted over the methods compared with the baseline." if several else "'CI excludes 0' is not adjusted (one comparison)."))


def write_outputs(spec: BenchSpec, rows: list[dict[str, Any]], summarised: list[dict[str, Any]] | None = None) -> None:
    """The CSV of ``rows`` and the .md / .html summaries of ``summarised`` (default: the same rows), each written atomically."""
    csv_path = Path(spec.results)
    summarised = rows if summarised is None else summarised
    summary = summarise(summarised, spec.extra_metrics)
    paired = None
    if spec.paired_against and not spec.folds:
        paired = (spec.paired_against, spec.paired_metric, paired_against(summarised, spec.paired_against, spec.paired_metric,
                                                                                archive=archive_root(spec.results)))
    table = format_summary(summary, extra=spec.extra_metrics, paired=paired)
    provenance = describe_provenance(summarised)
    write_results(spec, rows)
    over = (f"the folds x seeds runs of each method ({spec.folds}-fold cross-validation, the sample std pooled over folds and seeds; "
            "the mean alone for one run)" if spec.folds else "seeds (the mean alone for one seed)")
    rundir.atomic_write_bytes(csv_path.with_suffix(".md"), (
        f"# {spec.name}\n\nMean ± sample std over {over}; test split, best validation checkpoint "
        f"(val_balanced_accuracy: the validation score, which is what selects among methods).{paired_note(spec) if paired else ''}\n\n{table}\n\n{provenance}\n"
    ).encode())
    page = f"<html><body><h1>{html.escape(spec.name)}</h1>{format_summary(summary, 'html', spec.extra_metrics, paired)}</body></html>"
    rundir.atomic_write_bytes(csv_path.with_suffix(".html"), page.encode())
    print(table)
    print(f"\nrows: {csv_path}  summary: {csv_path.with_suffix('.md')}")


def write_results(spec: BenchSpec, rows: list[dict[str, Any]]) -> None:
    """The results CSV, atomically: the metric columns, the optional ones, the run directory, the config hash, the provenance."""
    header = [*COLUMNS[:-1], *spec.extra_metrics, COLUMNS[-1], HASH_COLUMN, *PROVENANCE]
    rundir.write_csv(Path(spec.results), header, ([r.get(key) for key in header] for r in rows))


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
    seeds = parse_seeds(args.seeds)
    datasets = [d for d in args.datasets.split(",") if d] if args.datasets else None
    if getattr(args, "folds", None) is not None:
        problem = folds_problem(args.folds)
        if problem:
            raise ConfigError(f"--folds {problem}; pass --folds 2 or more (e.g. 5), or leave --folds out for the grid's own split")
        spec.folds = args.folds
    if not cells(spec, only, seeds, datasets):
        raise LongtailError("the selection has no cell; check --only, --seeds and --datasets against the benchmark file")
    run(spec, only, seeds, datasets)
    return 0


def parse_seeds(text: str | None) -> list[int] | None:
    """``--seeds 0,2`` as integers (None: every seed); a word that is not an integer is a one-line error."""
    if not text:
        return None
    seeds = []
    for word in (w.strip() for w in text.split(",")):
        if not word:
            continue
        try:
            seeds.append(int(word))
        except ValueError:
            raise ConfigError(f"--seeds: '{word}' is not an integer; pass seeds like --seeds 0,1,2") from None
    return seeds


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "bench", help="run a methods x seeds benchmark grid",
        description="Run every (method, seed) cell of a grid YAML at one budget (every (method, seed, fold) cell with --folds), printing a line per finished epoch "
                    "(validation score, elapsed time, ETA of the run and of the grid), then write the CSV rows and the "
                    "mean ± std summaries. A rerun skips finished cells and resumes interrupted ones.")
    p.add_argument("-c", "--config", required=True, help="benchmark YAML (see benchmarks/)")
    p.add_argument("--only", help="comma-separated method names to run")
    p.add_argument("--seeds", help="comma-separated seeds to run")
    p.add_argument("--datasets", help="comma-separated dataset names (the grid's datasets:) to run")
    p.add_argument("--folds", type=int, metavar="K", help="k-fold cross-validation: run every cell once per fold 0..K-1 (data.split.kind kfold); "
                                            "overrides the grid's folds:")
    p.set_defaults(func=cmd_bench)
