"""k-fold grids (`longtail bench --folds K`, ``folds: K``): every cell once per fold, a ``fold`` CSV column, a summary over
folds x seeds, per-fold resume and config hashes, and the one-line errors of a bad fold count."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest
import yaml

from longtail import rundir
from longtail.bench import grid as bench
from longtail.cli.commands import main
from longtail.core.errors import ConfigError

from ..helpers import tiny_config


def fold_grid(tmp_path: Path, **extra) -> Path:
    """One method, two seeds, one epoch; no long-tail recipe (k-fold refuses one)."""
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(tiny_config(tmp_path, train={"epochs": 1})))
    spec = {"name": "digits-folds", "output_dir": str(tmp_path / "grid"), "results": str(tmp_path / "results" / "folds.csv"),
            "seeds": [0, 1], "overrides": ["train.epochs=1", "data.long_tail=null", "data.split.val=0.2"],
            "methods": {"ce": {"config": str(base)}}, **extra}
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture
def no_reports(monkeypatch) -> None:
    """The cells' HTML reports (seconds of matplotlib each) play no part in folds, rows or resuming."""
    monkeypatch.setattr("longtail.evaluation.report.write_report", lambda run_dir: Path(run_dir) / "report.html")


def read_rows(tmp_path: Path) -> list[dict[str, str]]:
    with open(tmp_path / "results" / "folds.csv") as f:
        return list(csv.DictReader(f))


def test_folds_flag_runs_every_cell_per_fold_summarises_and_resumes(tmp_path, capsys, no_reports):
    path = fold_grid(tmp_path)
    assert main(["bench", "-c", str(path), "--folds", "2"]) == 0
    rows = read_rows(tmp_path)
    assert sorted((r["seed"], r["fold"]) for r in rows) == [("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")]
    grid = tmp_path / "grid"
    assert sorted(p.name for p in grid.iterdir()) == ["ce-s0-f0", "ce-s0-f1", "ce-s1-f0", "ce-s1-f1"]
    tests = {}
    for r in rows:  # each cell ran its own fold: the config and splits.json say so, and the two test folds partition digits
        run_dir = Path(r["run_dir"])
        split = yaml.safe_load((run_dir / rundir.CONFIG).read_text())["data"]["split"]
        assert (split["kind"], split["folds"], split["fold"]) == ("kfold", 2, int(r["fold"]))
        si = json.loads((run_dir / rundir.SPLITS).read_text())
        assert (si["kind"], si["folds"], si["fold"]) == ("kfold", 2, int(r["fold"]))
        tests[(r["seed"], r["fold"])] = set(si["test"]["indices"])
        assert float(r["balanced_accuracy"]) == pytest.approx(json.loads((run_dir / rundir.RESULTS).read_text())["test"]["balanced_accuracy"])
    assert not tests[("0", "0")] & tests[("0", "1")] and len(tests[("0", "0")] | tests[("0", "1")]) == 1797
    assert tests[("0", "0")] == tests[("1", "0")]  # the split seed, not the training seed, draws the folds
    # one config hash per fold cell
    spec = bench.load_bench(path)
    spec.folds = 2
    hashes = {c: bench.config_hash(bench.cell_config(spec, *c)) for c in bench.cells(spec)}
    assert len(set(hashes.values())) == 4 and all(r["config_hash"] == hashes[("default", "ce", int(r["seed"]), int(r["fold"]))] for r in rows)
    # the summary: mean ± sample std over the 2 folds x 2 seeds
    values = [float(r["balanced_accuracy"]) for r in rows]
    (entry,) = bench.summarise(bench.collect(spec))
    assert (entry["folds"], entry["seeds"], entry["runs"]) == (2, 2, 4)
    assert entry["balanced_accuracy"] == pytest.approx((statistics.mean(values), statistics.stdev(values)))
    md = (tmp_path / "results" / "folds.md").read_text()
    assert "| dataset | method | folds x seeds | balanced_accuracy |" in md and "| 2 x 2 = 4 |" in md
    assert bench.format_mean_std(statistics.mean(values), statistics.stdev(values)) in md and "2-fold cross-validation" in md
    assert "folds x seeds" in (tmp_path / "results" / "folds.html").read_text()

    # a rerun trains nothing; a fold cell lost from both the CSV and the run folders is the only one trained again
    stamps = {p: p.stat().st_mtime_ns for p in grid.glob("*/results.json")}
    capsys.readouterr()
    assert main(["bench", "-c", str(path), "--folds", "2"]) == 0
    assert "4 of 4 selected cells are done and skipped" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    csv_file = tmp_path / "results" / "folds.csv"
    csv_file.write_text("".join(line for line in csv_file.read_text().splitlines(keepends=True) if not line.startswith("default,ce,1,1,")))
    rundir.discard(grid / "ce-s1-f1")
    capsys.readouterr()
    assert main(["bench", "-c", str(path), "--folds", "2"]) == 0
    assert "3 of 4 selected cells are done and skipped" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in stamps if p.parent.name != "ce-s1-f1"} == {p: t for p, t in stamps.items() if p.parent.name != "ce-s1-f1"}
    assert len(read_rows(tmp_path)) == 4


def test_folds_key_in_the_yaml_and_the_flag_overriding_it(tmp_path):
    spec = bench.load_bench(fold_grid(tmp_path, folds=3))
    assert spec.folds == 3 and bench.cells(spec, seeds=[0]) == [("default", "ce", 0, 0), ("default", "ce", 0, 1), ("default", "ce", 0, 2)]
    overrides = bench.cell_overrides(spec, "default", "ce", 0, 2)
    assert overrides[-6:-3] == ["data.split.kind=kfold", "data.split.folds=3", "data.split.fold=2"] and overrides[-2] == "name=ce-s0-f2"
    assert bench.cell_label(spec, "default", "ce", 0, 2) == "ce/seed 0/fold 2"
    assert bench.cells(bench.load_bench(fold_grid(tmp_path))) == [("default", "ce", 0), ("default", "ce", 1)]  # no folds: holdout cells


@pytest.mark.parametrize("folds", ["1", "0", "101"])
def test_a_bad_folds_flag_is_one_line_naming_it(tmp_path, capsys, folds):
    assert main(["bench", "-c", str(fold_grid(tmp_path)), "--folds", folds]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --folds {folds} is not a number of folds: k-fold needs 2 to 100; pass --folds 2 or more (e.g. 5), or leave --folds out for the grid's own split"
    assert not (tmp_path / "grid").exists()


def test_a_bad_folds_key_names_the_file_and_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"bench.yaml.*folds.*1 is not a number of folds: k-fold needs 2 to 100; set folds: 2 or more"):
        bench.load_bench(fold_grid(tmp_path, folds=1))


def test_folds_on_a_long_tail_recipe_is_refused_before_any_training(tmp_path):
    path = fold_grid(tmp_path, folds=2)
    raw = yaml.safe_load(path.read_text())
    raw["overrides"] = ["train.epochs=1"]  # the base config's LDAM long-tail recipe stays
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"data.split.kind kfold does not combine with a data.long_tail recipe"):
        bench.run(bench.load_bench(path))
    assert not (tmp_path / "grid").exists()


def test_a_csv_from_before_folds_reads_as_holdout_rows(tmp_path):
    spec = bench.load_bench(fold_grid(tmp_path))
    old = tmp_path / "results" / "folds.csv"
    old.parent.mkdir(parents=True)
    old.write_text("dataset,method,seed,accuracy,balanced_accuracy,run_dir\ndefault,ce,0,0.5,0.5,x\ndefault,ce,1,0.7,0.6,y\n")
    rows = bench.recorded_rows(spec)
    assert set(rows) == {("default", "ce", 0), ("default", "ce", 1)} and rows[("default", "ce", 0)]["fold"] is None
    (entry,) = bench.summarise(list(rows.values()))
    assert "folds" not in entry and entry["seeds"] == 2
    assert "| seeds |" in bench.format_summary([entry])
    bench.write_results(spec, list(rows.values()))
    assert [r["fold"] for r in read_rows(tmp_path)] == ["", ""]  # holdout rows: an empty fold


def test_rows_of_the_other_split_scheme_stay_in_the_csv(tmp_path):
    """A `--folds` run keeps the grid's holdout rows in the CSV (and a holdout run its fold rows), out of the summary."""
    spec = bench.load_bench(fold_grid(tmp_path))
    recorded = {("default", "ce", 0): {"dataset": "default", "method": "ce", "seed": 0, "fold": None},
                ("default", "ce", 0, 1): {"dataset": "default", "method": "ce", "seed": 0, "fold": 1},
                ("default", "gone", 0): {"dataset": "default", "method": "gone", "seed": 0, "fold": None}}
    assert bench.other_scheme_rows(spec, recorded) == [recorded[("default", "ce", 0, 1)]]
    spec.folds = 2
    assert bench.other_scheme_rows(spec, recorded) == [recorded[("default", "ce", 0)]]  # a method no longer in the grid is not kept
