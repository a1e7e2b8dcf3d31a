"""Benchmark harness on digits: a 2 x 2 grid runs, the table has mean ± std, a rerun skips finished cells."""

from __future__ import annotations

import csv
import json
import re
import shutil
import statistics
from pathlib import Path

import pytest
import torch
import yaml

from longtail import rundir
from longtail.bench import grid as bench
from longtail.core.errors import ConfigError, LongtailError

from ..helpers import tiny_config


def make_grid(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(tiny_config(tmp_path, train={"epochs": 1})))
    spec = {
        "name": "digits-grid",
        "output_dir": str(tmp_path / "grid"),
        "results": str(tmp_path / "results" / "digits.csv"),
        "seeds": [0, 1],
        "overrides": ["train.epochs=1"],
        "methods": {"ce": {"config": str(base)}, "balanced_softmax": {"config": str(base), "overrides": ["loss.name=balanced_softmax"]}},
    }
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_grid_runs_summarises_and_skips_finished_cells(tmp_path, capsys):
    path = make_grid(tmp_path)
    spec = bench.load_bench(path)
    rows = bench.run(spec)
    assert sorted((r["method"], r["seed"]) for r in rows) == [("balanced_softmax", 0), ("balanced_softmax", 1), ("ce", 0), ("ce", 1)]
    with open(tmp_path / "results" / "digits.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4
    for col in ("method", "seed", "accuracy", "balanced_accuracy", "macro_f1", "gmean", "mauc", "ece", "train_seconds"):
        assert col in table[0]
    summary = {e["method"]: e for e in bench.summarise(rows)}
    ce = [float(r["balanced_accuracy"]) for r in table if r["method"] == "ce"]
    mean, std = summary["ce"]["balanced_accuracy"]
    assert mean == pytest.approx(statistics.mean(ce)) and std == pytest.approx(statistics.stdev(ce))
    md = (tmp_path / "results" / "digits.md").read_text()
    assert "±" in md and "balanced_softmax" in md
    # the validation score (what selects a method) is the run's own, and the table says where it ran
    for r in table:
        res = json.loads((Path(r["run_dir"]) / "results.json").read_text())
        assert float(r["val_balanced_accuracy"]) == pytest.approx(res["val"]["balanced_accuracy"])
    env = json.loads((Path(table[0]["run_dir"]) / rundir.ENVIRONMENT).read_text())
    assert f"git revision: {str(env['git_revision'])[:12]}" in md and f"torch: {env['packages']['torch']}" in md

    # a rerun touches nothing: every cell's results.json keeps its mtime
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "grid").glob("*/results.json")}
    capsys.readouterr()
    bench.run(spec)
    assert "4 of 4 selected cells are done and skipped" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


EPOCH_LINE = re.compile(
    r"^\[(\d)/2\] (\w+)/seed 0: epoch (\d)/2 \((\w+)\)  val balanced_accuracy (0\.\d{4})  "
    r"elapsed (\d+:\d\d) \(grid (\d+:\d\d)\)  ETA run (\d+:\d\d), grid (\d+:\d\d)$"
)


def seconds(text: str) -> int:
    m, s = text.split(":")
    return int(m) * 60 + int(s)


def test_bench_prints_a_line_per_epoch_with_score_and_eta(tmp_path, capsys):
    """Two 2-epoch runs: four epoch lines whose score is the run's logged validation score and whose grid ETA counts down."""
    spec = bench.load_bench(make_grid(tmp_path))
    spec.overrides = ["train.epochs=2"]
    bench.run(spec, seeds=[0])
    out = capsys.readouterr().out.splitlines()
    starts = [line for line in out if ": running (" in line]
    assert starts[0] == "[1/2] balanced_softmax/seed 0: running (2 epochs); ETA unknown"  # grid order (the YAML's)
    assert re.fullmatch(r"\[2/2\] ce/seed 0: running \(2 epochs\); ETA run \d+:\d\d, grid \d+:\d\d", starts[1])
    epochs = [EPOCH_LINE.match(line) for line in out if ": epoch " in line]
    assert len(epochs) == 4 and all(epochs), out
    assert [(m[1], m[2], m[3]) for m in epochs] == [("1", "balanced_softmax", "1"), ("1", "balanced_softmax", "2"), ("2", "ce", "1"), ("2", "ce", "2")]
    for m in epochs:  # the printed score is the one metrics.jsonl logged for that epoch
        log = rundir.read_jsonl(bench.cell_dir(spec, "default", m[2], 0) / rundir.METRICS)
        assert float(m[5]) == pytest.approx(log[int(m[3]) - 1]["val_balanced_accuracy"], abs=5e-5)
    # grid ETA = mean epoch time x epochs left (3, 2, 1, 0): with equal-ish epochs it never grows much and ends at 0
    grid_eta = [seconds(m[9]) for m in epochs]
    run_eta = [seconds(m[8]) for m in epochs]
    assert grid_eta[-1] == 0 and run_eta[1] == 0 and run_eta[3] == 0
    assert grid_eta[0] >= grid_eta[2] >= grid_eta[3]


def test_grid_eta_is_mean_epoch_time_times_epochs_left():
    """Hand-computed with a fake clock: epochs of 10 s and 20 s -> 15 s each for the 3 left."""
    from longtail.bench.progress import Cell, GridProgress, duration
    from longtail.engine.hooks import EpochReport

    now = [100.0]
    lines: list[str] = []
    progress = GridProgress([Cell("a/seed 0", 3), Cell("b/seed 0", 2, done=0)], clock=lambda: now[0], out=lines.append)
    progress.start_cell(0)
    assert lines[-1] == "[1/2] a/seed 0: running (3 epochs); ETA unknown"
    report = EpochReport(1, 3, "main", "balanced_accuracy", 0.5, {})
    now[0] += 10
    progress(report)
    assert lines[-1].endswith("ETA run 0:20, grid 0:40") and "val balanced_accuracy 0.5000" in lines[-1]
    now[0] += 20
    progress(EpochReport(2, 3, "main", "balanced_accuracy", None, {}))
    assert "val not validated" in lines[-1] and lines[-1].endswith("elapsed 0:30 (grid 0:30)  ETA run 0:15, grid 0:45")
    assert duration(3725) == "1:02:05" and duration(59.6) == "1:00"


def test_subset_selection_and_unknown_method(tmp_path):
    spec = bench.load_bench(make_grid(tmp_path))
    assert bench.cells(spec, only=["ce"], seeds=[1]) == [("default", "ce", 1)]
    with pytest.raises(ConfigError, match="did you mean 'ce'"):
        bench.cells(spec, only=["cee"])


def test_dataset_selection_and_unknown_dataset(tmp_path):
    path = make_grid(tmp_path)
    raw = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**raw, "datasets": {"small": ["data.max_per_class=5"], "large": []}}, sort_keys=False))
    spec = bench.load_bench(path)
    assert bench.cells(spec, only=["ce"], seeds=[0], datasets=["large"]) == [("large", "ce", 0)]
    assert [c[0] for c in bench.cells(spec, datasets=["large", "small"])] == ["small"] * 4 + ["large"] * 4  # the grid's order
    with pytest.raises(ConfigError, match=r"--datasets: unknown dataset 'smal'.*did you mean 'small'.*datasets: small, large"):
        bench.cells(spec, datasets=["smal"])


def test_interrupted_cell_is_resumed_not_restarted(tmp_path):
    import longtail

    spec = bench.load_bench(make_grid(tmp_path))
    spec.overrides = ["train.epochs=2"]
    run_dir = bench.cell_dir(spec, "default", "ce", 0)
    cfg = yaml.safe_load(Path(spec.methods["ce"].config).read_text())
    cfg.update(name=run_dir.name, output_dir=str(run_dir.parent))
    cfg["train"]["epochs"] = 2
    longtail.train(cfg, stop_after=1)
    first_line = rundir.read_jsonl(run_dir / rundir.METRICS)[0]
    bench.run(spec, only=["ce"], seeds=[0])
    lines = rundir.read_jsonl(run_dir / rundir.METRICS)
    assert lines[0] == first_line and [r["epoch"] for r in lines] == [1, 2]


def test_one_seed_has_no_spread_and_several_seeds_use_the_sample_std():
    rows = [
        {"dataset": "d", "method": "ce", "seed": 0, "balanced_accuracy": 0.5, "train_seconds": 10.0},
        {"dataset": "d", "method": "ldam", "seed": 0, "balanced_accuracy": 0.25, "train_seconds": 12.0},
        {"dataset": "d", "method": "ldam", "seed": 1, "balanced_accuracy": 0.75, "train_seconds": 14.0},
    ]
    summary = {e["method"]: e for e in bench.summarise(rows)}
    assert summary["ce"]["balanced_accuracy"] == (0.5, None)
    assert summary["ldam"]["balanced_accuracy"] == pytest.approx((0.5, statistics.stdev([0.25, 0.75])))
    lines = {line.split(" | ")[1]: line for line in bench.format_summary(list(summary.values())).splitlines()[2:]}
    assert "| 0.5000 |" in lines["ce"] and "±" not in lines["ce"] and "| 10.0 |" in lines["ce"]
    assert "| 0.5000 ± 0.3536 |" in lines["ldam"] and "| 13.0 ± 1.4 |" in lines["ldam"]


def test_cifar_cpu_grid_is_the_recipes_protocol_compressed_to_10_epochs():
    """benchmarks/cifar10_lt_cpu.yaml: 5 methods (HML1 in two forms) x 3 seeds, the recipes' batch and decay rules, the 200-epoch lr schedule / 20;
    issue #29's methods at the same 10 epochs with their own recipes' optimizers."""
    from longtail.bench.grid import cells, load_bench
    from longtail.catalog.check import load_config
    from longtail.engine.optim import lr_factor

    root = Path(__file__).resolve().parents[2]
    spec = load_bench(root / "benchmarks" / "cifar10_lt_cpu.yaml")
    legacy = ["balanced_softmax", "cdb_ce", "ce", "hml1", "hml1_official", "ldam_drw"]
    newer = ["bcl", "gcl", "lade", "mislas", "ride", "ride_ea", "sade", "weight_balancing"]
    assert sorted(spec.methods) == sorted(legacy + newer) and spec.seeds == [0, 1, 2]
    assert len(cells(spec)) == 3 * len(legacy + newer)
    for name in newer:
        method = spec.methods[name]
        cfg = load_config(root / method.config, [*spec.overrides, *method.overrides])
        recipe = load_config(root / method.config)
        stages, own = cfg.resolved_stages(), recipe.resolved_stages()
        assert sum(s.epochs for s in stages) == 10 and len(stages) == len(own), name
        for stage, original in zip(stages, own):
            assert stage.optimizer == original.optimizer and stage.loss == original.loss, name  # the recipe's own optimizer and loss
            if stage.schedule.name == "multistep":  # the 160 / 180 of 200 at the same share of the stage, one warm-up epoch
                assert stage.schedule.milestones == [stage.epochs - 2, stage.epochs - 1] and stage.schedule.warmup_epochs == 1, name
                assert stage.schedule.gamma == original.schedule.gamma, name
        if len(stages) == 2:  # the two-stage methods: 9 epochs of the first stage, 1 of the second
            assert [s.epochs for s in stages] == [9, 1], name
    assert load_config(root / spec.methods["ride"].config, [*spec.overrides, *spec.methods["ride"].overrides]).class_weights.kwargs["start_epoch"] == 9
    assert load_config(root / spec.methods["bcl"].config, [*spec.overrides, *spec.methods["bcl"].overrides]).schedule.warmup_epochs == 0
    compressed = [0.1] * 8 + [1e-3, 1e-5]  # 200 epochs: 0.1 (warm-up 5), x0.01 after 160, again after 180
    for name, method in ((n, spec.methods[n]) for n in legacy):
        cfg = load_config(root / method.config, [*spec.overrides, *method.overrides])
        assert cfg.data.drop_last is False, name
        lrs = []
        for stage in cfg.resolved_stages():
            assert stage.optimizer.no_decay == [] and stage.optimizer.weight_decay == pytest.approx(2e-4), name
            lrs += [stage.optimizer.lr * lr_factor(e, stage.epochs, stage.schedule, stage.optimizer.lr) for e in range(stage.epochs)]
        if name.startswith("hml1"):  # the rows before and in HMLoss's official form differ in the loss only
            assert cfg.resolved_stages()[1].loss.kwargs["weighting"] == ("hmloss" if name == "hml1_official" else "longtail")
        if name.startswith("hml1"):  # HML from epoch 6 (101 of 200) at lr x0.01, x0.01 again after 8 and 9 (160, 180)
            assert lrs == pytest.approx([0.1] * 5 + [1e-3] * 3 + [1e-5, 1e-7])
        else:
            assert lrs == pytest.approx(compressed), name
        if name == "ldam_drw":  # DRW from epoch 9 (161 of 200)
            assert cfg.class_weights.kwargs["start_epoch"] == 9


def test_provenance_keeps_the_dirty_mark_of_uncommitted_code(tmp_path):
    runs = []
    for name, rev in (("a", "0123456789abcdef0123+dirty"), ("b", "fedcba9876543210fedc")):
        (tmp_path / name).mkdir()
        rundir.write_json(tmp_path / name / rundir.ENVIRONMENT, {"git_revision": rev, "packages": {"torch": "2"}, "machine": {}, "command": "x"})
        runs.append(bench.provenance_of(tmp_path / name))
    assert "- git revision: 0123456789ab+dirty; fedcba987654" in bench.describe_provenance(runs)


def test_the_machine_column_names_the_cpu_model_where_the_run_recorded_it(tmp_path, monkeypatch):
    from longtail.rundir import provenance

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n")
    real_path = provenance.Path
    monkeypatch.setattr(provenance, "Path", lambda p: cpuinfo if p == "/proc/cpuinfo" else real_path(p))
    assert provenance.cpu_model() == "AMD EPYC 7B13"
    env = provenance.environment(seed=0)
    assert env["machine"]["cpu_model"] == "AMD EPYC 7B13"
    for name, machine in (("new", env["machine"]), ("old", {"processor": "x86_64", "cpu_count": 2, "torch_threads": 2})):
        (tmp_path / name).mkdir()
        rundir.write_json(tmp_path / name / rundir.ENVIRONMENT, {"git_revision": "ab", "packages": {}, "machine": machine, "command": "x"})
    assert bench.provenance_of(tmp_path / "new")["machine"].startswith("AMD EPYC 7B13, ")
    assert bench.provenance_of(tmp_path / "old")["machine"] == "x86_64, 2 CPUs, 2 torch threads, CUDA: none"  # runs from before the field
    cpuinfo.unlink()
    monkeypatch.setattr(provenance.platform, "processor", lambda: "")
    assert provenance.cpu_model() is None  # neither /proc/cpuinfo nor the platform says


def test_optional_columns_reach_the_csv_and_the_summary(tmp_path):
    path = make_grid(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw.update(seeds=[0], extra_metrics=["weighted_precision", "weighted_recall", "micro_auc", "stopped_epoch"])
    raw["methods"]["ce"]["overrides"] = ["train.early_stopping.patience=5"]
    path.write_text(yaml.safe_dump(raw))
    spec = bench.load_bench(path)
    bench.run(spec, only=["ce"])
    with open(tmp_path / "results" / "digits.csv") as f:
        (row,) = list(csv.DictReader(f))
    res = json.loads((Path(row["run_dir"]) / "results.json").read_text())
    for key in ("weighted_precision", "weighted_recall", "micro_auc"):
        assert float(row[key]) == pytest.approx(res["test"][key])
    assert row["stopped_epoch"] == ""  # one epoch, patience 5: early stopping on, not triggered (None)
    md = (tmp_path / "results" / "digits.md").read_text()
    assert "| ece | val_balanced_accuracy | weighted_precision | weighted_recall | micro_auc | stopped_epoch | train_seconds |" in md
    assert f"{res['test']['micro_auc']:.4f}" in md


def test_unknown_optional_column_names_the_closest(tmp_path):
    path = make_grid(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["extra_metrics"] = ["micro_uac"]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"'micro_uac' is not an optional column \(did you mean 'micro_auc'\?\)"):
        bench.load_bench(path)


def test_a_grid_whose_run_directories_are_gone_keeps_its_csv_rows(tmp_path):
    """A fresh clone has the committed results CSV but not benchmarks/runs: a rerun trains nothing and
    rebuilds the same CSV and table (provenance included) from the recorded rows."""
    import shutil

    spec = bench.load_bench(make_grid(tmp_path)).model_copy(update={"paired_against": "ce"})
    bench.run(spec)
    csv_file, md_file = tmp_path / "results" / "digits.csv", tmp_path / "results" / "digits.md"
    before_csv, before_md = csv_file.read_text(), md_file.read_text()
    assert "git revision: " in before_md and "machine: " in before_md
    archives = sorted((tmp_path / "results" / "digits.predictions" / "default").iterdir())
    assert [p.name for p in archives] == ["balanced_softmax-s0.npz", "balanced_softmax-s1.npz", "ce-s0.npz", "ce-s1.npz"]
    saved = {p: p.read_bytes() for p in archives}
    shutil.rmtree(tmp_path / "grid")
    rows = bench.run(spec)
    assert not (tmp_path / "grid").exists()  # nothing trained again
    assert len(rows) == 4 and csv_file.read_text() == before_csv and md_file.read_text() == before_md
    # the paired column is read back from the saved test decisions, which the rerun left byte-identical
    paired_row = next(line for line in before_md.splitlines() if line.startswith("| default | balanced_softmax"))
    assert " seeds)" in paired_row and "n/a" not in paired_row
    assert {p: p.read_bytes() for p in archives} == saved
    # a cell missing from both the CSV and the run folders is still trained
    kept = [line for line in before_csv.splitlines() if ",ce,1," not in line]
    csv_file.write_text("\n".join(kept) + "\n")
    bench.run(spec)
    assert sorted(p.name for p in (tmp_path / "grid").iterdir()) == ["ce-s1"]
    assert len(bench.recorded_rows(spec)) == 4


def test_a_grid_stopped_midway_keeps_the_rows_of_its_finished_cells(tmp_path, monkeypatch):
    spec = bench.load_bench(make_grid(tmp_path)).model_copy(update={"paired_against": "ce"})
    real, calls = bench.run_cell, []

    def stop_at_the_third(*args, **kwargs):
        calls.append((args[2], args[3]))  # (method, seed)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(bench, "run_cell", stop_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        bench.run(spec)
    with open(tmp_path / "results" / "digits.csv") as f:
        assert len(list(csv.DictReader(f))) == 2  # written after each finished cell, not only at the end
    assert (tmp_path / "results" / "digits.md").read_text().count("| default |") == len({m for m, _ in calls[:2]})
    # the finished cells' test decisions are kept too, before the baseline they are compared with has run
    kept = sorted(p.name for p in (tmp_path / "results" / "digits.predictions" / "default").iterdir())
    assert kept == sorted(f"{m}-s{s}.npz" for m, s in calls[:2])  # balanced_softmax first: the YAML lists it first


def shared_training_grid(tmp_path: Path, **shared: object) -> Path:
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(tiny_config(tmp_path, train={"epochs": 2})))
    adjust = {"config": str(base), "overrides": ["posthoc.logit_adjust=true"], "posthoc": True}
    spec = {
        "name": "shared",
        "output_dir": str(tmp_path / "grid"),
        "results": str(tmp_path / "results" / "shared.csv"),
        "seeds": [0],
        "methods": {
            "la_trained": adjust,  # trains its own network: the reference
            "la_shared": {**adjust, "same_training_as": "ce", **shared},  # listed before ce: its training runs first anyway
            "ce": {"config": str(base)},
        },
    }
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_a_posthoc_method_can_reuse_another_methods_training(tmp_path, capsys):
    spec = bench.load_bench(shared_training_grid(tmp_path))
    rows = {r["method"]: r for r in bench.run(spec, only=["la_trained", "la_shared"])}  # ce is run because la_shared needs it
    assert set(rows) == {"la_trained", "la_shared", "ce"}
    grid = tmp_path / "grid"
    out = capsys.readouterr().out
    assert "la_shared/seed 0 (evaluates the training of ce/seed 0)" in out
    assert out.index("[1/3] la_trained") < out.index("[2/3] ce/seed 0") < out.index("[3/3] la_shared")
    # the shared cell holds ce's trained weights and epochs, and reports what training it would have given
    shared, trained, ce = (json.loads((grid / f"{m}-s0" / rundir.RESULTS).read_text()) for m in ("la_shared", "la_trained", "ce"))
    for key in ("model",):
        a = torch.load(grid / "la_shared-s0" / rundir.BEST, weights_only=True)[key]
        b = torch.load(grid / "ce-s0" / rundir.BEST, weights_only=True)[key]
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert rundir.read_jsonl(grid / "la_shared-s0" / rundir.METRICS) == rundir.read_jsonl(grid / "ce-s0" / rundir.METRICS)
    assert shared["test"] == ce["test"]  # before the correction: the same network
    assert shared["posthoc"] == trained["posthoc"] and shared["test_posthoc"] == trained["test_posthoc"]
    assert rows["la_shared"]["balanced_accuracy"] == pytest.approx(trained["test_posthoc"]["balanced_accuracy"])
    assert yaml.safe_load((grid / "la_shared-s0" / rundir.CONFIG).read_text())["posthoc"]["logit_adjust"] is True
    # its train_seconds count the training it re-uses (recorded in ce's last checkpoint) and its evaluation
    trained_for = torch.load(grid / "ce-s0" / rundir.LAST, weights_only=True)["progress"]["elapsed_seconds"]
    assert shared["train_seconds"] > trained_for > 0


def test_shared_training_with_a_different_training_config_is_refused_before_any_run(tmp_path):
    spec = bench.load_bench(shared_training_grid(tmp_path, overrides=["posthoc.logit_adjust=true", "loss.name=balanced_softmax"]))
    with pytest.raises(ConfigError, match=r"'la_shared': same_training_as 'ce' needs configs that differ only in posthoc and eval, but they also differ in loss;"):
        bench.run(spec)
    assert not (tmp_path / "grid").exists()


@pytest.mark.parametrize(("base", "message"), [
    ("ce_typo", r"same_training_as 'ce_typo' is not another method of this grid; choose from: la_trained, ce"),
    ("la_trained", r"same_training_as 'la_trained', which itself re-uses 'ce's training; name 'ce' instead"),
])
def test_shared_training_must_name_a_training_method(tmp_path, base, message):
    path = shared_training_grid(tmp_path, same_training_as=base)
    if base == "la_trained":
        spec = yaml.safe_load(path.read_text())
        spec["methods"]["la_trained"]["same_training_as"] = "ce"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(ConfigError, match=message):
        bench.load_bench(path)


def test_shared_training_whose_trained_run_is_gone_names_the_fix(tmp_path):
    spec = bench.load_bench(shared_training_grid(tmp_path))
    bench.run(spec, only=["ce"])
    shutil.rmtree(tmp_path / "grid" / "ce-s0")  # a fresh clone: the CSV row is left, the run directory is not
    with pytest.raises(LongtailError, match=r"re-uses the training of ce/seed 0, but '.*ce-s0' holds no finished run; run that cell first \(--only ce\), or"):
        bench.run(spec, only=["la_shared"])
    assert not (tmp_path / "grid" / "la_shared-s0").exists()


def test_worst_group_column_reads_the_subgroup_table_of_results(tmp_path):
    """extra_metrics: [worst_group_<column>] is the balanced accuracy of the column's worst reported group (issue #26)."""
    res = {"subgroups": {"split": "test", "tables": [
        {"column": "sex", "worst": "male", "groups": [{"group": "female", "balanced_accuracy": 0.7}, {"group": "male", "balanced_accuracy": 0.6}]},
        {"column": "site", "worst": None, "groups": [{"group": "a", "balanced_accuracy": None}]},
    ]}}
    assert bench.worst_group(res, "sex") == 0.6
    assert bench.worst_group(res, "site") is None and bench.worst_group(res, "age") is None and bench.worst_group({}, "sex") is None
    path = make_grid(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["extra_metrics"] = ["worst_group_sex"]
    path.write_text(yaml.safe_dump(raw))
    assert bench.load_bench(path).extra_metrics == ["worst_group_sex"]
    raw["extra_metrics"] = ["worst_group_"]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="'worst_group_' is not an optional column"):
        bench.load_bench(path)
