"""benchmarks/test_agnostic.py on a tiny grid: CE, balanced softmax and SADE cells trained on a small CIFAR-10
archive in its real layout, then scored on skewed test sets (as shipped, at the known prior, after
SADE's test-time aggregation)."""

from __future__ import annotations

import csv
import importlib.util
import sys

import numpy as np
import pytest
import yaml

from longtail import rundir
from longtail.bench.grid import cell_config, cell_dir, config_hash, load_bench, run
from longtail.data.longtail import shifted_subset
from longtail.inference.test_agnostic import Shift

from .test_gpu_protocol_smoke import ROOT, make_data


def _script(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # the script imports doc_blocks beside it
    spec = importlib.util.spec_from_file_location("test_agnostic_script", ROOT / "benchmarks" / "test_agnostic.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_grid(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ta")
    data = make_data(tmp)
    grid = {
        "name": "ta_tiny", "output_dir": str(tmp / "runs"), "results": str(tmp / "results.csv"), "seeds": [0],
        "overrides": ["train.progress=false", "train.tensorboard=false", "eval.gallery_cams=false", "train.epochs=1",
                      "schedule.milestones=[1]", "schedule.warmup_epochs=0", "data.max_per_class=6",
                      f"data.source.root={data / 'cifar10_jpeg.tar.gz'}"],
        "methods": {"ce": {"config": "configs/cifar10_lt/ce.yaml"},
                    "balanced_softmax": {"config": "configs/cifar10_lt/balanced_softmax.yaml"},
                    "sade": {"config": "configs/cifar10_lt/sade.yaml", "overrides": ["model.blocks=1"]}},
    }
    path = tmp / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    spec = load_bench(path)
    run(spec)
    return spec, path


def test_the_script_scores_every_column_on_every_test_set(tiny_grid, monkeypatch):
    spec, path = tiny_grid
    script = _script(monkeypatch)
    shifts = (Shift("forward", 2), Shift("uniform"), Shift("backward", 2))
    monkeypatch.setattr(script, "DEFAULT_SHIFTS", shifts)
    rows = script.score(spec, str(path), [0])
    assert len(rows) == len(shifts) * len(script.COLUMNS)
    saved = rundir.load_predictions(cell_dir(spec, "default", "ce", 0), "test")
    logits, y = saved["logits"], saved["targets"]
    counts = np.asarray(rundir.read_json(cell_dir(spec, "default", "ce", 0) / rundir.RESULTS)["train_counts"], dtype=float)
    for shift in shifts:
        keep = shifted_subset(y, 10, shift.direction, shift.ratio)
        by_column = {r["column"]: r for r in rows if r["test_set"] == shift.name}
        assert {r["images"] for r in by_column.values()} == {len(keep)}
        assert by_column["CE"]["accuracy"] == pytest.approx(float((logits[keep].argmax(1) == y[keep]).mean()))
        q = np.bincount(y[keep], minlength=10) / len(keep)
        moved = logits[keep] - np.log(counts / counts.sum()) + np.log(q)  # tau 1, from the train prior to q
        assert by_column["CE + LA to known prior"]["accuracy"] == pytest.approx(float((moved.argmax(1) == y[keep]).mean()))
        weights = [float(w) for w in by_column["SADE + test-time aggregation"]["expert_weights"].split()]
        assert len(weights) == 3 and sum(weights) == pytest.approx(1.0, abs=0.02)
        agreement = [float(a) for a in by_column["SADE + test-time aggregation"]["expert_agreement"].split()]
        assert len(agreement) == 3 and all(0.0 < a <= 1.0 + 1e-6 for a in agreement)
        alone = [float(a) for a in by_column["SADE + test-time aggregation"]["expert_accuracy"].split()]  # top-1 %, one decimal
        assert len(alone) == 3 and all(0.0 <= a <= 100.0 for a in alone)
    table = script.table(rows)
    assert table.count("\n") == 1 + len(shifts) and "SADE + test-time aggregation" in table
    first = table.splitlines()[2].split(" | ")  # forward2: the per-expert top-1 once, without an image-source prefix
    own = next(r for r in rows if r["test_set"] == "forward2" and r["column"] == "SADE + test-time aggregation")
    assert first[-1].rstrip(" |") == own["expert_accuracy"] and first[-2].startswith("test images: ")


def test_methods_and_test_sets_narrow_the_table(tiny_grid, monkeypatch):
    spec, path = tiny_grid
    script = _script(monkeypatch)
    rows = script.score(spec, str(path), [0], ["sade"], [Shift("backward", 2)])
    sade_columns = [label for label, c in script.COLUMNS.items() if c[0] == "sade"]
    assert [r["column"] for r in rows] == sade_columns and {r["test_set"] for r in rows} == {"backward2"}
    pooled = next(r for r in rows if r["column"] == "SADE + aggregation on training-pool images")
    own = next(r for r in rows if r["column"] == "SADE + test-time aggregation")
    assert own["adapt_size"] == own["images"] and pooled["adapt_size"] > 0 and pooled["adapt_size"] != own["adapt_size"]
    header = script.table(rows).splitlines()[0]
    assert "CE" not in header.split(" | ") and all(label in header for label in sade_columns) and "view agreement" in header
    assert "top-1 of each expert alone" in header
    with pytest.raises(SystemExit, match="--methods lade"):
        script.score(spec, str(path), [0], ["lade"])


def test_merge_keeps_the_seeds_scored_elsewhere_and_names_each_machine(tiny_grid, monkeypatch, tmp_path):
    """--merge: the CSV's rows of another seed stay (with their machine), the table averages over both seeds where
    both have a column, a column only the earlier seed has names its seed, and a rescored row replaces its old one."""
    _, path = tiny_grid
    script = _script(monkeypatch)
    monkeypatch.setattr(script, "ROOT", tmp_path)
    monkeypatch.setattr(script, "DEFAULT_SHIFTS", (Shift("uniform"),))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "benchmarks.md").write_text("intro\n<!-- ta:start -->\nold\n<!-- ta:end -->\n")
    earlier = [{"seed": 5, "column": "CE", "test_set": "uniform", "images": 60, "accuracy": 0.25, "expert_weights": "", "machine": "Earlier CPU"},
               {"seed": 5, "column": "SADE (mean of experts)", "test_set": "uniform", "images": 60, "accuracy": 0.5,
                "expert_weights": "", "machine": "Earlier CPU"},
               {"seed": 0, "column": "CE", "test_set": "uniform", "images": 60, "accuracy": 0.99, "expert_weights": "", "machine": "stale"}]
    with (tmp_path / "ta.csv").open("w", newline="") as f:  # the older CSV's columns: no expert_agreement, no adapt_size
        writer = csv.DictWriter(f, fieldnames=list(earlier[0]))
        writer.writeheader()
        writer.writerows(earlier)
    monkeypatch.setattr(sys, "argv", ["test_agnostic.py", "-c", str(path), "--seeds", "0", "--methods", "ce", "--marker", "ta",
                                      "--csv", "ta.csv", "--merge"])
    script.main()
    rows = script.read_rows(tmp_path / "ta.csv")
    assert [(r["seed"], r["column"]) for r in rows] == [(0, "CE"), (0, "CE + LA to known prior"), (5, "CE"), (5, "SADE (mean of experts)")]
    ce0 = rows[0]
    assert ce0["accuracy"] != 0.99 and ce0["machine"] not in ("stale", "Earlier CPU")  # rescored here, the stale row gone
    doc = (tmp_path / "docs" / "benchmarks.md").read_text()
    assert doc.startswith("intro\n<!-- ta:start -->") and "old" not in doc
    assert f"Machine: seed 0: {ce0['machine']}; seed 5: Earlier CPU" in doc
    assert "--seeds 0 --methods ce --marker ta --csv ta.csv --merge" in doc and "seed 5 kept from the CSV's earlier rows" in doc
    header, _, body = doc.split("| test set")[1].splitlines()[:3]
    assert "| CE + LA to known prior (seeds 0) | SADE (mean of experts) (seeds 5) |" in header and "| CE |" in header
    mean = (100 * ce0["accuracy"] + 25.0) / 2
    assert body.split(" | ")[2].startswith(f"{mean:.1f} ± ")
    assert body.split(" | ")[4].rstrip(" |") == "50.0"


def test_per_seed_entries_name_their_seed_once_there_are_several(monkeypatch):
    script = _script(monkeypatch)
    rows = [{"seed": s, "column": "SADE + test-time aggregation", "test_set": "uniform", "images": 9, "accuracy": 0.5,
             "expert_weights": w, "expert_agreement": a, "expert_accuracy": t}
            for s, w, a, t in ((1, "0.1 0.2 0.7", "", ""), (2, "0.3 0.3 0.4", "0.800 0.700 0.900", "50.0 40.0 30.0"))]
    cells = script.table(rows).splitlines()[2].strip("| ").split(" | ")
    assert cells[-3:] == ["s1 test images: 0.1 0.2 0.7; s2 test images: 0.3 0.3 0.4", "s2 test images: 0.800 0.700 0.900", "s2 50.0 40.0 30.0"]
    assert script.machines(rows) == "not recorded"


def test_an_untrained_cell_is_named_with_the_command_that_trains_it(tiny_grid, monkeypatch, tmp_path):
    spec, path = tiny_grid
    script = _script(monkeypatch)
    with pytest.raises(SystemExit, match="--only ce --seeds 7"):
        script.trained_cell(spec, str(path), "ce", 7)


def test_the_shipped_test_agnostic_grid_trains_what_the_cifar_grid_trains():
    """benchmarks/test_agnostic.yaml says its cells equal the CIFAR grid's cells of the same method and seed."""
    ours, cifar = load_bench(ROOT / "benchmarks" / "test_agnostic.yaml"), load_bench(ROOT / "benchmarks" / "cifar10_lt_cpu.yaml")
    assert set(ours.methods) == {"ce", "balanced_softmax", "sade"} and ours.seeds == cifar.seeds
    for method in ours.methods:
        for seed in ours.seeds:
            assert config_hash(cell_config(ours, "default", method, seed)) == config_hash(cell_config(cifar, "default", method, seed)), method
