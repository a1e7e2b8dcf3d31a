"""MLflow tracking against a real store (SQLite, offline), read back with MlflowClient: params, epochs, results, files,
a resumed run, an unreachable store (warning or error), a bench grid's parent run and later artifacts."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import pytest
import yaml

import longtail
from longtail import rundir, tracking
from longtail.bench import grid as bench
from longtail.catalog.check import load_config
from longtail.cli import main
from longtail.core.errors import ConfigError
from longtail.tracking import values
from longtail.training import resume_check

from ..helpers import tiny_config

MlflowClient = pytest.importorskip("mlflow.tracking").MlflowClient
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")  # mlflow's SQLAlchemy store, not ours

CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens, a connection is refused at once


def sqlite_uri(folder: Path) -> str:
    return f"sqlite:///{folder}/mlflow.db"


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """A 2-epoch run stopped after epoch 1 and resumed: (store uri, run dir, run id after the stop, its status then)."""
    tmp = tmp_path_factory.mktemp("tracked")
    uri = sqlite_uri(tmp)
    cfg = tiny_config(tmp, tracking={"mlflow": {"uri": uri, "experiment": "tests"}})
    paused = longtail.train(cfg, stop_after=1)
    assert not paused.finished
    first = tracking.read_record(paused.run_dir)
    status = MlflowClient(uri).get_run(first["run_id"]).info.status
    result = longtail.train(resume=paused.run_dir)
    assert result.finished
    return uri, result.run_dir, first["run_id"], status


def test_a_run_logs_its_config_epochs_results_and_files(tracked, tmp_path):
    uri, run_dir, first_id, paused_status = tracked
    client = MlflowClient(uri)
    record = json.loads((run_dir / tracking.TRACKING).read_text())["mlflow"]
    experiment = client.get_experiment_by_name("tests")
    assert (record["uri"], record["experiment_id"]) == (uri, experiment.experiment_id)
    # the resume continued the MLflow run of the paused one: one run in the experiment, ended KILLED at the pause
    assert record["run_id"] == first_id and paused_status == "KILLED"
    assert [r.info.run_id for r in client.search_runs([experiment.experiment_id])] == [first_id]
    run = client.get_run(first_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.tags["longtail.run_dir"] == str(run_dir.resolve())

    params = run.data.params
    cfg = load_config(run_dir / rundir.CONFIG)
    assert params["model.name"] == "small_cnn" and params["data.source.name"] == "digits"
    assert float(params["optimizer.lr"]) == cfg.optimizer.lr and int(params["train.epochs"]) == cfg.train.epochs == 2
    assert params["data.split.val"] == "0.2" and params["tracking.mlflow.uri"] == uri
    assert params["data.train_transforms.0.name"] == "random_crop"  # a list of sections gets its index

    epochs = [r for r in rundir.read_jsonl(run_dir / rundir.METRICS) if "train_loss" in r]
    assert [r["epoch"] for r in epochs] == [1, 2]
    for key in ("val_balanced_accuracy", "train_loss", "lr"):
        history = sorted(client.get_metric_history(first_id, key), key=lambda m: m.step)
        assert [(m.step, m.value) for m in history] == [(r["epoch"], pytest.approx(r[key])) for r in epochs]

    results = json.loads((run_dir / rundir.RESULTS).read_text())
    assert run.data.metrics["test_balanced_accuracy"] == pytest.approx(results["test"]["balanced_accuracy"])
    assert run.data.metrics["test_ece"] == pytest.approx(results["test"]["ece"])
    assert run.data.metrics["best_epoch"] == results["best_epoch"]

    listed = {a.path for a in client.list_artifacts(first_id)}
    assert {rundir.REPORT_HTML, rundir.REPORT_MD, rundir.REPORT_FILES, rundir.CONFIG, rundir.RESULTS} <= listed
    if importlib.util.find_spec("longtail.evaluation.card") is not None:
        assert rundir.CARD in listed
    copy = Path(client.download_artifacts(first_id, rundir.REPORT_HTML, str(tmp_path)))
    assert copy.read_bytes() == (run_dir / rundir.REPORT_HTML).read_bytes()
    # a SQLite store keeps its artifacts beside its file, not in the working directory
    assert (Path(uri[len("sqlite:///"):]).parent / "mlartifacts" / first_id).is_dir()


def test_log_artifacts_adds_files_to_the_run_and_skips_untracked_runs(tracked, tmp_path):
    uri, run_dir, run_id, _ = tracked
    inside = run_dir / "exported" / "model.txt"
    inside.parent.mkdir()
    inside.write_text("a model")
    outside = tmp_path / "notes.txt"
    outside.write_text("notes")
    tracking.log_artifacts(run_dir, [inside, outside])
    client = MlflowClient(uri)
    assert [a.path for a in client.list_artifacts(run_id, "exported")] == ["exported/model.txt"]
    assert "notes.txt" in {a.path for a in client.list_artifacts(run_id)}
    assert Path(client.download_artifacts(run_id, "exported/model.txt", str(tmp_path / "back"))).read_text() == "a model"
    tracking.log_artifacts(tmp_path, [outside])  # no tracking.json: nothing to add to, no error


def test_a_resume_may_change_the_tracking_and_a_bench_cell_hash_ignores_it(tracked):
    _, run_dir, _, _ = tracked
    saved = load_config(run_dir / rundir.CONFIG)
    moved = load_config(run_dir / rundir.CONFIG, ["tracking.mlflow.uri=sqlite:////elsewhere/mlflow.db", "tracking.required=true",
                                                   "data.license=CC BY 4.0"])
    changes = resume_check.resume_changes(saved.model_dump(mode="json"), moved, run_dir)
    assert set(changes) == {"tracking.mlflow.uri", "tracking.required", "data.license"}
    untracked = load_config(run_dir / rundir.CONFIG, ["tracking.mlflow=null"])
    assert bench.config_hash(saved) == bench.config_hash(moved) == bench.config_hash(untracked)


def test_an_unreachable_store_is_one_warning_and_the_run_finishes(tmp_path, caplog):
    cfg = tiny_config(tmp_path, train={"epochs": 1, "progress": False, "tensorboard": False}, tracking={"mlflow": {"uri": CLOSED}})
    with caplog.at_level(logging.WARNING, logger="longtail"):
        result = longtail.train(cfg)
    assert result.finished and (result.run_dir / rundir.RESULTS).is_file() and (result.run_dir / rundir.REPORT_HTML).is_file()
    assert not (result.run_dir / tracking.TRACKING).exists()
    said = [r.getMessage() for r in caplog.records if "MLflow" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("MLflow tracking is off for this run: cannot use the MLflow store 'http://127.0.0.1:9'")
    assert "tracking.required=true" in said[0] and "sqlite:///mlflow.db" in said[0]


def test_a_required_store_that_cannot_be_used_stops_before_training(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_config(tmp_path, name="required")))
    status = main(["train", "-c", str(recipe), f"tracking.mlflow.uri={CLOSED}", "tracking.required=true"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert status == 2
    assert err.startswith("error: cannot use the MLflow store 'http://127.0.0.1:9'") and err.endswith("or set tracking.required=false to train untracked")
    assert not (tmp_path / "runs").exists()  # no run directory (nor its parent) left behind


def test_a_run_that_fails_after_its_mlflow_run_started_ends_it_failed(tmp_path):
    uri = sqlite_uri(tmp_path)
    cfg = tiny_config(tmp_path, name="fails", eval={"subgroups": ["site"]}, tracking={"mlflow": {"uri": uri}})
    with pytest.raises(ConfigError, match="eval.subgroups names metadata column 'site'"):  # digits has no metadata: refused before training
        longtail.train(cfg)
    assert not (tmp_path / "runs" / "fails").exists()
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("longtail").experiment_id])
    assert (run.info.run_name, run.info.status) == ("fails", "FAILED")


def test_a_bench_grid_nests_its_cells_under_one_parent_run(tmp_path):
    uri = sqlite_uri(tmp_path)
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(tiny_config(tmp_path, train={"epochs": 1, "progress": False, "tensorboard": False},
                                               tracking={"mlflow": {"uri": uri, "experiment": "grid"}})))
    spec = bench.BenchSpec.model_validate({  # the quickstart grid (benchmarks/quickstart.yaml) at one seed and epoch, plus a cell
        # that re-evaluates ce's training (same_training_as): its copy of ce's folder must not log into ce's MLflow run
        "name": "quickstart", "output_dir": str(tmp_path / "grid"), "results": str(tmp_path / "grid" / "results.csv"), "seeds": [0],
        "methods": {"balanced_softmax": {"config": str(base), "overrides": ["loss.name=balanced_softmax"]}, "ce": {"config": str(base)},
                    "ce_la": {"config": str(base), "overrides": ["posthoc.logit_adjust=true"], "posthoc": True, "same_training_as": "ce"}},
    })
    bench.run(spec)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("grid").experiment_id
    runs = client.search_runs([experiment])
    parents = [r for r in runs if r.data.tags.get("longtail.bench") == "quickstart"]
    assert len(runs) == 4 and len(parents) == 1
    parent = parents[0]
    children = {r.info.run_name: r for r in runs if r is not parent}
    assert sorted(children) == ["balanced_softmax-s0", "ce-s0", "ce_la-s0"]
    assert {r.data.tags.get("mlflow.parentRunId") for r in children.values()} == {parent.info.run_id}
    assert [children[n].data.params["loss.name"] for n in ("balanced_softmax-s0", "ce-s0")] == ["balanced_softmax", "ce"]
    assert [children[n].data.params["posthoc.logit_adjust"] for n in ("ce-s0", "ce_la-s0")] == ["false", "true"]
    for cell in ("ce-s0", "ce_la-s0"):  # each cell's own run: its results and its one trained epoch (the shared one copied over)
        run = children[cell]
        results = json.loads((Path(spec.output_dir) / cell / rundir.RESULTS).read_text())
        assert tracking.read_record(Path(spec.output_dir) / cell)["run_id"] == run.info.run_id
        assert run.data.metrics["test_balanced_accuracy"] == pytest.approx(results["test"]["balanced_accuracy"])
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_balanced_accuracy")] == [1]
    assert "test_posthoc_balanced_accuracy" in children["ce_la-s0"].data.metrics
    assert parent.info.status == "FINISHED" and all(r.info.status == "FINISHED" for r in children.values())
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"results.csv", "results.md", "results.html"}
    assert tracking.read_record(Path(spec.output_dir))["run_id"] == parent.info.run_id
    bench.run(spec)  # a rerun trains nothing and reopens the same parent: no new run
    assert len(client.search_runs([experiment])) == 4


def test_params_fit_mlflow_limits():
    params = values.config_params({"a": {"long": "x" * 7000, "odd key!": [1, 2], "none": None, "flag": True}, "stages": [{"epochs": 3}]})
    assert len(params["a.long"]) == values.MAX_PARAM_VALUE and params["a.long"].endswith("...")
    assert params["a.odd key_"] == "[1, 2]" and params["a.none"] == "null" and params["a.flag"] == "true" and params["stages.0.epochs"] == "3"
    assert [len(b) for b in values.batches(list(range(250)))] == [100, 100, 50]
    assert values.epoch_metrics({"epoch": 3, "best": True, "stage": "main", "lr": 0.1, "val_ece": float("nan")}) == {"lr": 0.1}
