"""SPBL end to end on digits: paces, the weighted SVM, exact resume, eval/predict/report, SD-198 lists."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import longtail
from longtail import rundir
from longtail.core.errors import ConfigError, LongtailError
from longtail.spbl import pipeline
from longtail.spbl.classifier import load_classifier

from ..helpers import tiny_config


def spbl_config(tmp_path: Path, name: str = "spbl", **spbl: object) -> dict:
    cfg = tiny_config(tmp_path, name=name, train={"epochs": 2, "progress": False, "tensorboard": False, "threads": 1})
    cfg["spbl"] = {"add_ratios": [1.0], **spbl}
    return cfg


def test_two_paces_follow_the_spbl_procedure(tmp_path):
    result = longtail.train(spbl_config(tmp_path))
    run = result.run_dir
    records = [r for r in rundir.read_jsonl(run / rundir.METRICS) if r.get("kind") == "spbl_pace"]
    assert [r["pace"] for r in records] == [0, 1]
    pool = rundir.read_json(run / "spbl" / "pool.json")
    counts = np.asarray(result.results["train_counts"])
    # pace 0 trains on ceil(0.2 n_c) images per class; pace 1 (ratio 1.0) on the whole training split
    assert records[0]["cnn_train_counts"] == [int(np.ceil(0.2 * n)) for n in counts]
    assert records[1]["cnn_train_counts"] == counts.tolist()
    assert len(pool["initial"]) + len(pool["pool"]) == counts.sum()
    # the SVM of pace 1 is fitted on both blocks: pace 0's rows plus the rebuilt pace-1 block
    block0 = np.load(run / "paces" / "0" / "block.npz")
    block1 = np.load(run / "paces" / "1" / "block.npz")
    assert records[1]["classifier_rows"] == len(block0["labels"]) + len(block1["labels"])
    target, delta = np.asarray(records[1]["target_counts"]), np.asarray(records[1]["delta"])
    assert np.bincount(block1["labels"], minlength=len(counts)).tolist() == (counts + delta).tolist()
    assert sorted(target.tolist()) == sorted(records[1]["selected_counts"])
    # stored weights: the initial block x train_ratio, pace 1's block cost[y] x (1 * 0.8 + 0.2)
    assert np.allclose(block0["stored_weights"], 0.2)
    cost = np.asarray(records[1]["cost"])
    assert np.allclose(block1["stored_weights"], cost[block1["labels"]], atol=1e-5)
    assert min(cost) == 1.0 and max(cost) <= 10.0
    # the final scores are the softmax of the last SVM's decision values on the test features
    test = np.load(run / "predictions" / "test.npz")
    clf = load_classifier(run / pipeline.FINAL_CLASSIFIER)
    assert np.allclose(test["logits"], clf.decision_function(test["features"].astype(np.float64)), atol=1e-4)
    assert result.results["spbl"]["calibration"] == "none" and "validation" in result.results["spbl"]["selection"]
    assert result.results["test"]["balanced_accuracy"] > 0.8  # digits: far above chance (0.1)


def svm_logits(run: Path) -> np.ndarray:
    return np.load(run / "predictions" / "test.npz")["logits"]


def test_resume_between_and_inside_paces_matches_an_uninterrupted_run(tmp_path):
    reference = longtail.train(spbl_config(tmp_path, name="whole")).run_dir
    cfg = spbl_config(tmp_path, name="pieces")
    run = longtail.train(cfg, stop_after=1).run_dir  # inside pace 0
    assert not (run / "paces" / "0" / pipeline.PACE_RECORD).exists()
    assert not longtail.train(resume=run, stop_after=2).finished  # pace 0 done, stopped between paces
    assert (run / "paces" / "0" / pipeline.PACE_RECORD).is_file() and not (run / "paces" / "1").exists()
    assert not longtail.train(resume=run, stop_after=3).finished  # inside pace 1
    assert longtail.train(resume=run).finished
    assert np.array_equal(svm_logits(run), svm_logits(reference))
    epochs = [r["epoch"] for r in rundir.read_jsonl(run / rundir.METRICS) if "epoch" in r]
    assert epochs == [1, 2, 3, 4]


def test_train_seconds_of_a_resumed_spbl_run_count_the_earlier_processes(tmp_path):
    run = longtail.train(spbl_config(tmp_path), stop_after=2).run_dir  # pace 0 done
    record_path = run / "paces" / "0" / pipeline.PACE_RECORD
    record = rundir.read_json(record_path)
    assert record["elapsed_seconds"] > 0
    rundir.write_json(record_path, {**record, "elapsed_seconds": 1000.0})  # as if pace 0 had taken 1000 s
    started = time.perf_counter()
    result = longtail.train(resume=run)
    assert 1000.0 < result.results["train_seconds"] <= 1000.0 + time.perf_counter() - started + 0.1


@pytest.mark.parametrize("trigger", ["paces/0/pace.json", "paces/1/checkpoints/last.pt"], ids=["between_paces", "inside_pace"])
def test_killed_spbl_run_resumes_to_the_same_predictions(tmp_path, trigger):
    """kill -9 as soon as ``trigger`` appears: right after pace 0 finished, or inside pace 1."""
    reference = longtail.train(spbl_config(tmp_path, name="ref")).run_dir
    cfg = spbl_config(tmp_path, name="killed")
    path = tmp_path / "killed.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = Path(cfg["output_dir"]) / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "longtail.cli", "train", "-c", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (run / trigger).exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / rundir.RESULTS).exists(), "the kill should land before the run finished"
    assert longtail.train(resume=run).finished
    assert np.array_equal(svm_logits(run), svm_logits(reference))


def test_eval_predict_and_report_use_the_svm(tmp_path):
    run = longtail.train(spbl_config(tmp_path, calibration="sigmoid")).run_dir
    results = rundir.read_json(run / rundir.RESULTS)
    assert results["spbl"]["calibration"] == "sigmoid"
    again = longtail.evaluate(run, split="test")
    assert again["balanced_accuracy"] == pytest.approx(results["test"]["balanced_accuracy"])
    img = tmp_path / "digit.png"
    Image.fromarray((np.load(run / "predictions" / "test.npz")["targets"][:1] * 0 + 200).astype(np.uint8).repeat(64).reshape(8, 8)).save(img)
    rows = longtail.predict(run, [img])
    probs = np.array([rows[0][c] for c in rundir.read_json(run / "data.json")["class_names"]])
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)
    report = (run / "report.md").read_text()
    assert "## SPBL paces" in report and "cost" in report and "spbl_balance" in report
    assert "## SPBL metric table" in report and "| weighted |" in report


def test_options_sklearn_softmax_smote_and_cnn_weights_run(tmp_path):
    result = longtail.train(spbl_config(tmp_path, classifier="softmax", resample="smote", cnn_class_weights=True))
    assert result.results["spbl"]["classifier"] == "softmax"
    pace1 = [r for r in rundir.read_jsonl(result.run_dir / rundir.METRICS) if r.get("pace") == 1 and "epoch" in r]
    assert {r["class_weights"] for r in pace1} == {"spbl_cost"}


def test_spbl_config_errors_are_one_line(tmp_path):
    cfg = spbl_config(tmp_path)
    cfg["posthoc"] = {"logit_adjust": True}
    with pytest.raises(ConfigError, match="post-hoc"):
        longtail.train(cfg)
    cfg = spbl_config(tmp_path, add_ratios=[0.5, 1.5])
    with pytest.raises(ConfigError, match=r"spbl.add_ratios.1' \(1.5\): Input should be less than or equal to 1"):
        longtail.train(cfg)
    cfg = spbl_config(tmp_path, trian_ratio=0.2)
    with pytest.raises(ConfigError, match="did you mean 'train_ratio'"):
        longtail.train(cfg)


def test_tampered_classifier_file_is_refused_not_run(tmp_path):
    run = longtail.train(spbl_config(tmp_path)).run_dir
    (run / pipeline.FINAL_CLASSIFIER).write_bytes(b"not a skops file")
    with pytest.raises(LongtailError, match="cannot be read"):
        longtail.evaluate(run)


def test_sd198_list_files_train_one_pace(tmp_path):
    """The SD-198 layout: images/<class folder>/<file>, train.txt / val.txt with paths relative to images/."""
    root = tmp_path / "sd198"
    rng = np.random.default_rng(0)
    lines = {"train": [], "val": []}
    for c, name in enumerate(["Acne_Vulgaris", "Actinic_solar_Damage(Pigmentation)", "Allergic_Contact_Dermatitis"]):
        for i in range(12):
            rel = f"{name}/{name}_{i:02d}.jpg"
            (root / "images" / name).mkdir(parents=True, exist_ok=True)
            colour = np.zeros((20, 24, 3), dtype=np.uint8)
            colour[..., c] = 200
            Image.fromarray(np.clip(colour + rng.integers(0, 40, colour.shape), 0, 255).astype(np.uint8)).save(root / "images" / rel)
            lines["train" if i < 9 else "val"].append(f"{rel} {c}")
    for split, rows in lines.items():
        (root / f"{split}.txt").write_text("\n".join(rows) + "\n")
    cfg = yaml.safe_load(Path("configs/sd198/spbl.yaml").read_text()) if Path("configs/sd198/spbl.yaml").is_file() else None
    assert cfg is not None, "configs/sd198/spbl.yaml is the recipe this fixture mirrors"
    overrides = [
        f"data.source.train={root / 'train.txt'}", f"data.source.test={root / 'val.txt'}", f"data.source.root={root / 'images'}",
        "data.source.num_classes=3", "data.image_size=16", "model={name: small_cnn}", "data.batch_size=8", "optimizer.lr_mult={}",
        "data.train_transforms=[]", "data.eval_transforms=[]", "data.normalize=dataset", "train.epochs=1", "spbl.add_ratios=[]",
        f"output_dir={tmp_path / 'runs'}", "train.progress=false", "train.tensorboard=false", "schedule.milestones=[]", "data.split.val=0.25",
    ]
    result = longtail.train("configs/sd198/spbl.yaml", overrides)
    assert result.finished and result.results["spbl"]["paces"] == 1
    assert result.results["test"]["num_samples"] == 9 and result.results["test"]["balanced_accuracy"] > 0.5


def test_resume_of_a_finished_spbl_run_changes_nothing(tmp_path):
    import hashlib

    run = longtail.train(spbl_config(tmp_path, name="done")).run_dir
    digest = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.rglob("*") if p.is_file() and "tensorboard" not in p.parts}
    again = longtail.train(resume=run)
    assert again.finished and again.results["test"] == rundir.read_json(run / rundir.RESULTS)["test"]
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in digest} == digest
