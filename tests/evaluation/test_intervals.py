"""Intervals of a run's test metrics and paired comparisons of runs (issue #27), wired through train, eval, the report, compare and bench."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import longtail
from longtail import rundir
from longtail.bench.paired import paired_against, paired_cell
from longtail.core.errors import ConfigError, LongtailError
from longtail.core.schema import BootstrapConfig, EvalConfig
from longtail.evaluation.cohorts import check_columns
from longtail.evaluation.intervals import final_test_predictions, paired_comparison, resampling_groups
from longtail.evaluation.report.comparison import compare
from longtail.metrics import bootstrap as B

from ..helpers import tiny_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny run with logit adjustment (so test and test_posthoc both have intervals)."""
    tmp = tmp_path_factory.mktemp("intervals")
    cfg = tiny_config(tmp, name="a", train={"epochs": 1, "progress": False, "tensorboard": False, "threads": 1},
                      posthoc={"logit_adjust": True, "grid": [0.0, 1.0]}, eval={"bootstrap": {"resamples": 200, "seed": 3}})
    return longtail.train(cfg).run_dir


def copy_run(run: Path, where: Path, logits=None) -> Path:
    """A copy of ``run`` whose stored test predictions are ``logits`` (the same, and no post-hoc correction, by default)."""
    shutil.copytree(run, where)
    saved = rundir.load_predictions(where, "test")
    z = saved["posthoc_logits"] if logits is None else logits
    rundir.save_predictions(where, "test", z, saved["targets"], list(saved["ids"]), None)
    (where / rundir.POSTHOC).write_text("{}")
    return where


def test_a_run_stores_intervals_of_every_summary_metric_around_its_own_numbers(trained):
    res = rundir.read_json(trained / rundir.RESULTS)
    iv = res["intervals"]
    assert iv["settings"] == {"resamples": 200, "confidence": 0.95, "method": "percentile", "seed": 3, "unit": "images",
                              "images": len(rundir.load_predictions(trained, "test")["targets"])}
    for split in ("test", "test_posthoc"):
        for metric, entry in iv[split].items():
            if res[split].get(metric) is None:
                continue
            assert entry["estimate"] == pytest.approx(res[split][metric], abs=1e-9), (split, metric)
            assert entry["low"] <= entry["estimate"] + 1e-12 and entry["estimate"] - 1e-12 <= entry["high"], (split, metric)
    saved = rundir.load_predictions(trained, "test")
    again = B.bootstrap_intervals(saved["posthoc_logits"], saved["targets"], resamples=200, seed=3)  # what the run stored, recomputed
    assert again["balanced_accuracy"]["low"] == pytest.approx(iv["test_posthoc"]["balanced_accuracy"]["low"])
    page = (trained / "report.html").read_text()
    assert "test, 95% CI" in page and "test, post-hoc, 95% CI" in page and "percentile bootstrap, 200 resamples of images" in page


def test_eval_prints_the_interval_column(trained, tmp_path, capsys):
    run = tmp_path / "a"
    shutil.copytree(trained, run)
    from longtail.cli import main

    capsys.readouterr()
    code = main(["eval", str(run)])
    out = capsys.readouterr().out
    assert code == 0 and "95% CI" in out and "intervals: 95% percentile bootstrap, 200 resamples of images" in out


def test_resampling_units(tmp_path):
    class Split:
        ids = ["a", "b", "c"]
        groups = np.array(["L1", "L1", "L2"])

    class Bundle:
        @staticmethod
        def columns(ids, names):
            return {"lesion": ["x", None, "x"]}

    assert resampling_groups(BootstrapConfig(), Split, Bundle).tolist() == ["L1", "L1", "L2"]
    assert resampling_groups(BootstrapConfig(groups="none"), Split, Bundle) is None
    assert resampling_groups(BootstrapConfig(groups="lesion"), Split, Bundle).tolist() == ["lesion=x", "image=b", "lesion=x"]
    Split.groups = None
    assert resampling_groups(BootstrapConfig(), Split, Bundle) is None
    with pytest.raises(ConfigError, match=r"eval.bootstrap.groups: column 'lesion' is not in the data's metadata .*'auto' / 'none'"):
        check_columns(EvalConfig(bootstrap={"groups": "lesion"}), {"1": {"sex": "f"}})


def test_compare_two_runs_paired(trained, tmp_path):
    saved = rundir.load_predictions(trained, "test")
    y = saved["targets"]
    same = copy_run(trained, tmp_path / "same")
    perfect = copy_run(trained, tmp_path / "perfect", logits=np.eye(saved["logits"].shape[1])[y] * 10.0)
    paired = paired_comparison([same, same])
    for d in paired["comparisons"][0]["metrics"].values():
        assert (d["difference"], d["low"], d["high"], d["p_value"]) == (0.0, 0.0, 0.0, 1.0)
    paired = paired_comparison([same, perfect])
    acc = paired["comparisons"][0]["metrics"]["accuracy"]
    base_right = saved["posthoc_logits"].argmax(1) == y
    assert acc["difference"] == pytest.approx(1.0 - base_right.mean()) and acc["low"] > 0 and acc["p_value"] < 0.05
    assert paired["comparisons"][0]["mcnemar"]["b"] == int((~base_right).sum()) and paired["comparisons"][0]["mcnemar"]["c"] == 0
    assert paired["settings"]["correction"] == "none" and paired["settings"]["resamples"] == 200  # the baseline run's eval.bootstrap
    three = paired_comparison([same, perfect, same])
    assert three["settings"]["correction"] == "holm"
    p = [c["metrics"]["accuracy"]["p_value"] for c in three["comparisons"]]
    assert [c["metrics"]["accuracy"]["p_holm"] for c in three["comparisons"]] == pytest.approx(B.holm(p).tolist())
    text = compare([same, perfect])
    assert "Paired against" in text and "McNemar (accuracy)" in text and "95% CI" in text


def test_compare_of_runs_on_other_images_keeps_the_table(trained, tmp_path):
    other = copy_run(trained, tmp_path / "other")
    saved = rundir.load_predictions(other, "test")
    rundir.save_predictions(other, "test", saved["logits"][1:], saved["targets"][1:], list(saved["ids"][1:]), None)
    text = compare([trained, other])
    assert "No paired comparison: runs" in text and "tested on different images" in text


def test_a_run_without_stored_corrected_logits_is_corrected_from_its_posthoc(trained, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(trained, old)
    saved = rundir.load_predictions(old, "test")
    rundir.save_predictions(old, "test", saved["logits"], saved["targets"], list(saved["ids"]), None)  # as runs before #27 stored them
    assert np.allclose(final_test_predictions(old)["logits"], saved["posthoc_logits"], atol=1e-5)
    (old / rundir.POSTHOC).write_text(json.dumps({"tau_norm": {"tau": 1.0}}))
    with pytest.raises(LongtailError, match="stores no post-hoc-corrected test logits; run `longtail eval"):
        final_test_predictions(old)


def test_bench_paired_column_across_seeds(trained, tmp_path):
    saved = rundir.load_predictions(trained, "test")
    y, c = saved["targets"], saved["logits"].shape[1]
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(3):
        noisy = copy_run(trained, tmp_path / f"ce-s{seed}", logits=rng.normal(size=(len(y), c)))
        good = copy_run(trained, tmp_path / f"good-s{seed}", logits=np.eye(c)[y] * 3 + rng.normal(size=(len(y), c)))
        twin = copy_run(trained, tmp_path / f"twin-s{seed}", logits=rng.normal(size=(len(y), c)))
        rows += [{"dataset": "d", "method": m, "seed": seed, "run_dir": str(p)} for m, p in (("ce", noisy), ("good", good), ("twin", twin))]
    out = paired_against(rows, "ce", "balanced_accuracy", BootstrapConfig(resamples=300))
    good, twin = out[("d", "good")], out[("d", "twin")]
    assert good["excludes_zero"] and good["low"] > 0 and good["seeds"] == 3 and good["correction"] == "holm"
    assert not twin["excludes_zero"] and twin["low"] < 0 < twin["high"]
    assert [good["p_holm"], twin["p_holm"]] == pytest.approx(B.holm([good["p_value"], twin["p_value"]]).tolist())
    diff, verdict = paired_cell(good)
    assert diff.startswith("+") and verdict.startswith("yes (Holm p")
    assert good["mixed_machines"] == [] and "machine" not in verdict  # the rows name no machine
    amd, intel = "AMD EPYC 7B13, 2 CPUs, 2 torch threads, CUDA: none", "Intel(R) Xeon(R) Processor, 2 CPUs, 2 torch threads, CUDA: none"
    for r in rows:  # every cell on the AMD machine, but good's seeds 0 and 2 on the Intel one
        r["machine"] = intel if r["method"] == "good" and r["seed"] in (0, 2) else amd
    mixed = paired_against(rows, "ce", "balanced_accuracy", BootstrapConfig(resamples=300))
    assert mixed[("d", "good")]["mixed_machines"] == [0, 2] and mixed[("d", "twin")]["mixed_machines"] == []
    assert mixed[("d", "good")]["difference"] == good["difference"]  # flagged, not changed
    assert paired_cell(mixed[("d", "good")])[1].endswith("3 seeds; seeds 0, 2 trained on another machine than the baseline's)")
    rows[1]["machine"] = "x86_64, 2 CPUs, 2 torch threads, CUDA: none"  # good seed 0 from before the CSV named the CPU: unknown, not flagged
    assert paired_against(rows, "ce", "balanced_accuracy", BootstrapConfig(resamples=300))[("d", "good")]["mixed_machines"] == [2]
    rows.append({"dataset": "d", "method": "alone", "seed": 7, "run_dir": str(tmp_path / "ce-s0")})
    assert paired_against(rows, "ce", "accuracy")[("d", "alone")] == {"note": "no seed was run for both this method and the baseline"}


def test_bench_summary_carries_the_paired_columns(trained, tmp_path):
    from pydantic import ValidationError

    from longtail.bench.grid import BenchSpec, format_summary, summarise

    saved = rundir.load_predictions(trained, "test")
    y, c = saved["targets"], saved["logits"].shape[1]
    rows = []
    for seed in range(2):
        for method, scale in (("ce", 0.0), ("good", 5.0)):
            run = copy_run(trained, tmp_path / f"{method}-s{seed}", logits=np.eye(c)[y] * scale + np.random.default_rng(seed).normal(size=(len(y), c)))
            rows.append({"dataset": "default", "method": method, "seed": seed, "run_dir": str(run), "balanced_accuracy": 0.5})
    paired = ("ce", "balanced_accuracy", paired_against(rows, "ce", "balanced_accuracy", BootstrapConfig(resamples=200)))
    table = format_summary(summarise(rows), paired=paired)
    header, _, ce_row, good_row = table.splitlines()
    assert "balanced_accuracy - ce [95% CI]" in header and "CI excludes 0" in header
    assert "| baseline | baseline |" in ce_row and "| yes (p " in good_row and "2 seeds)" in good_row  # one comparison: no Holm
    assert "<th>CI excludes 0</th>" in format_summary(summarise(rows), "html", paired=paired)
    spec = {"name": "g", "output_dir": str(tmp_path), "results": str(tmp_path / "r.csv"), "methods": {"ce": {"config": "c.yaml"}}}
    with pytest.raises(ValidationError, match="paired_against 'cee' is not a method of this grid; choose from: ce"):
        BenchSpec(**spec, paired_against="cee")
    with pytest.raises(ValidationError, match="paired_metric 'bal_acc' is not a summary metric"):
        BenchSpec(**spec, paired_against="ce", paired_metric="bal_acc")


def test_bench_paired_column_outlives_the_run_folders_through_the_archive(trained, tmp_path):
    from longtail.bench.archive import cell_archive

    saved = rundir.load_predictions(trained, "test")
    y, c = saved["targets"], saved["logits"].shape[1]
    rng = np.random.default_rng(1)
    rows = []
    for seed in range(2):
        for method, scale in (("ce", 0.5), ("good", 3.0)):
            run = copy_run(trained, tmp_path / "runs" / f"{method}-s{seed}", logits=np.eye(c)[y] * scale + rng.normal(size=(len(y), c)))
            rows.append({"dataset": "d", "method": method, "seed": seed, "run_dir": str(run), "config_hash": f"h-{method}"})
    boot, archive = BootstrapConfig(resamples=200), tmp_path / "r.predictions"
    live = paired_against(rows, "ce", "balanced_accuracy", boot)[("d", "good")]
    kept = paired_against(rows, "ce", "balanced_accuracy", boot, archive=archive)[("d", "good")]
    assert kept == live  # one-hot scores of the predicted class give a decision metric's own values, resample for resample
    path = cell_archive(archive, rows[3])  # good, seed 1
    with np.load(path) as z:
        assert (z["predicted"] == np.load(Path(rows[3]["run_dir"]) / "predictions" / "test.npz")["logits"].argmax(1)).all()
        assert str(z["config_hash"]) == "h-good" and (z["targets"] == y).all()
    shutil.rmtree(tmp_path / "runs")
    assert paired_against(rows, "ce", "balanced_accuracy", boot, archive=archive)[("d", "good")] == live
    assert "is gone; rerun the cell" in paired_against(rows, "ce", "balanced_accuracy", boot)[("d", "good")]["note"]
    assert "needs the scores" in paired_against(rows, "ce", "mauc", boot, archive=archive)[("d", "good")]["note"]
    stale = [{**r, "config_hash": "h-new"} if r["method"] == "good" else r for r in rows]
    assert "made with another config" in paired_against(stale, "ce", "balanced_accuracy", boot, archive=archive)[("d", "good")]["note"]
    path.unlink()
    assert "were not saved" in paired_against(rows, "ce", "balanced_accuracy", boot, archive=archive)[("d", "good")]["note"]
