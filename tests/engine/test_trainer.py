"""End-to-end training behaviour: determinism, exact resume, kill + resume, stages, post-hoc, predict."""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import longtail
from longtail import api, rundir
from longtail.core.errors import LongtailError
from longtail.core.safe_load import torch_load_safely
from longtail.rundir.checkpoint import load_checkpoint
from longtail.training import loading

from ..helpers import decoupled_config, tiny_config, weights_after_each_stop


def model_state(run_dir: Path, which: str = rundir.LAST) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / which)["model"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_train_writes_a_complete_run_directory(tmp_path):
    result = longtail.train(tiny_config(tmp_path))
    run = result.run_dir
    for rel in (rundir.CONFIG, rundir.ENVIRONMENT, rundir.SPLITS, rundir.METRICS, rundir.RESULTS, rundir.LAST, rundir.BEST, "predictions/test.npz", "predictions/val.npz"):
        assert (run / rel).is_file(), rel
    env = json.loads((run / rundir.ENVIRONMENT).read_text())
    assert env["seed"] == 0 and env["packages"]["torch"]
    lines = rundir.read_jsonl(run / rundir.METRICS)
    assert [r["epoch"] for r in lines] == [1, 2]
    assert all("val_balanced_accuracy" in r for r in lines)
    res = result.results
    assert res["test_evaluated_once"] and 0.0 <= res["test"]["balanced_accuracy"] <= 1.0
    preds = np.load(run / "predictions/test.npz")
    assert preds["logits"].shape == (len(preds["targets"]), 10)
    # the saved test logits reproduce the reported metric
    from longtail.metrics import compute

    assert compute(preds["logits"], preds["targets"])["accuracy"] == pytest.approx(res["test"]["accuracy"])


def test_same_seed_gives_identical_weights(tmp_path):
    a = longtail.train(tiny_config(tmp_path, name="a")).run_dir
    b = longtail.train(tiny_config(tmp_path, name="b")).run_dir
    assert_same_weights(model_state(a), model_state(b))
    c = longtail.train(tiny_config(tmp_path, name="c", seed=1)).run_dir
    assert not all(torch.equal(x, y) for x, y in zip(model_state(a).values(), model_state(c).values()))


def test_four_epochs_straight_equal_two_plus_resume(tmp_path):
    cfg = tiny_config(tmp_path, name="straight", train={"epochs": 4})
    straight = longtail.train(cfg).run_dir
    first = longtail.train({**cfg, "name": "sliced"}, stop_after=2)
    assert not first.finished and len(rundir.read_jsonl(first.run_dir / rundir.METRICS)) == 2
    resumed = longtail.train(resume=first.run_dir)
    assert resumed.finished
    assert_same_weights(model_state(straight), model_state(resumed.run_dir))
    assert_same_weights(model_state(straight, rundir.BEST), model_state(resumed.run_dir, rundir.BEST))
    assert [r["epoch"] for r in rundir.read_jsonl(resumed.run_dir / rundir.METRICS)] == [1, 2, 3, 4]


def test_train_seconds_of_a_resumed_run_count_the_earlier_processes(tmp_path):
    first = longtail.train(tiny_config(tmp_path, train={"epochs": 4}), stop_after=2)
    last = first.run_dir / rundir.LAST
    state = torch_load_safely(last)
    assert state["progress"]["elapsed_seconds"] > 0  # the stopped process's wall time so far
    state["progress"]["elapsed_seconds"] = 1000.0  # as if that process had run for 1000 s
    rundir.atomic_torch_save(state, last)
    started = time.perf_counter()
    resumed = longtail.train(resume=first.run_dir)
    this_process = time.perf_counter() - started
    assert 1000.0 < resumed.results["train_seconds"] <= 1000.0 + this_process + 0.1
    assert load_checkpoint(last)["progress"]["elapsed_seconds"] > 1000.0


def test_killed_run_resumes_from_last_without_losing_finished_epochs(tmp_path):
    cfg = tiny_config(tmp_path, name="killed", train={"epochs": 6}, data={"long_tail": None, "batch_size": 8})
    cfg_path = tmp_path / "killed.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "runs" / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "longtail.cli", "train", "-c", str(cfg_path), "train.threads=1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and len(rundir.read_jsonl(run / rundir.METRICS)) < 2:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = rundir.read_jsonl(run / rundir.METRICS)
    assert 2 <= len(done_before) < 6, "the kill should land while training is still running"
    # the kill may land between an epoch's log line and its checkpoint: that epoch is then redone
    saved_epoch = load_checkpoint(run / rundir.LAST)["progress"]["global_epoch"]
    assert saved_epoch >= len(done_before) - 1
    result = longtail.train(resume=run)
    after = rundir.read_jsonl(run / rundir.METRICS)
    assert [r["epoch"] for r in after] == [1, 2, 3, 4, 5, 6]
    assert after[:saved_epoch] == done_before[:saved_epoch]
    assert result.finished and (run / rundir.RESULTS).is_file()


def test_taken_run_name_gets_the_next_free_name_unless_overwrite(tmp_path, caplog):
    cfg = tiny_config(tmp_path, train={"epochs": 1})
    first = longtail.train(cfg).run_dir
    (tmp_path / "runs" / "run-3").mkdir()  # an empty folder is free
    (tmp_path / "runs" / "run-3" / "notes.txt").write_text("mine")  # ... this one is not
    with caplog.at_level(logging.WARNING, logger="longtail"):
        second = longtail.train(cfg).run_dir
        third = longtail.train(cfg).run_dir
    assert (second, third) == (tmp_path / "runs" / "run-2", tmp_path / "runs" / "run-4")
    assert (tmp_path / "runs" / "run-3" / "notes.txt").read_text() == "mine"
    assert loading.load_run_config(second).name == "run-2"  # the run's own config names its folder, so it resumes as itself
    assert json.loads((third / rundir.RESULTS).read_text())["name"] == "run-4"
    # called from Python, the message names the API's keywords, not CLI flags
    notice = [r.getMessage() for r in caplog.records if "is taken" in r.getMessage()][0]
    assert f"this run is '{second}'" in notice and "overwrite=True" in notice and f"resume='{first}'" in notice
    assert "--" not in notice
    before = (first / rundir.RESULTS).stat().st_mtime_ns
    assert longtail.train(cfg, overwrite=True).run_dir == first  # explicit overwrite keeps its meaning
    assert (first / rundir.RESULTS).stat().st_mtime_ns != before
    assert longtail.train(resume=first).run_dir == first  # and so does resume
    assert not (tmp_path / "runs" / "run-5").exists()


def test_cli_prints_the_new_name_with_cli_flags(tmp_path):
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_config(tmp_path, name="quickstart", train={"epochs": 1})))
    runs = tmp_path / "runs"
    for expected in ("quickstart", "quickstart-2"):
        out = subprocess.run([sys.executable, "-m", "longtail.cli", "train", "-c", str(cfg_path)], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert f"run directory: {runs / expected}" in out.stdout
    assert f"run directory '{runs / 'quickstart'}' is taken; this run is '{runs / 'quickstart-2'}'" in out.stderr
    assert f"pass --overwrite to replace it, or --resume {runs / 'quickstart'} to continue it" in out.stderr


def test_messages_name_cli_flags_only_under_the_cli():
    from longtail.core import wording

    assert wording.option("overwrite") == "overwrite=True" and wording.option("resume", "runs/a") == "resume='runs/a'"
    with wording.cli():
        assert wording.option("overwrite") == "--overwrite" and wording.option("resume_command", "runs/a") == "`longtail train --resume runs/a`"
    assert wording.option("resume_command", "runs/a") == "`longtail.train(resume='runs/a')`"


def test_resume_with_another_architecture_is_a_clear_error(tmp_path):
    first = longtail.train(tiny_config(tmp_path, train={"epochs": 2}), stop_after=1)
    with pytest.raises(LongtailError, match=r'model.name \("small_cnn" -> "resnet32"\)'):
        longtail.train(resume=first.run_dir, overrides=["model.name=resnet32"])
    # a checkpoint without its config (written before it was stored) is checked by its model identity
    from longtail.rundir.checkpoint import load_checkpoint

    state = load_checkpoint(first.run_dir / "checkpoints/last.pt")
    del state["run_config"]
    torch.save(state, first.run_dir / "checkpoints/last.pt")
    with pytest.raises(LongtailError, match=r'model.name \("small_cnn" -> "resnet32"\)'):
        longtail.train(resume=first.run_dir, overrides=["model.name=resnet32"])


def test_crt_second_stage_changes_only_the_head(tmp_path):
    cfg = decoupled_config(tmp_path, "crt", freeze_backbone=True, reinit_head=True, sampler={"name": "class_balanced"})
    _, (before, after) = weights_after_each_stop(cfg, [2, None])
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("head.") for k in changed), changed


def test_posthoc_tau_is_chosen_on_validation_and_used_by_predict(tmp_path):
    from longtail.evaluation.posthoc import logit_adjust
    from longtail.metrics import compute

    cfg = tiny_config(tmp_path, name="la", posthoc={"logit_adjust": True, "grid": [0.0, 0.5, 1.0, 1.5]})
    result = longtail.train(cfg)
    run = result.run_dir
    posthoc = json.loads((run / rundir.POSTHOC).read_text())
    tau = posthoc["logit_adjust"]["tau"]
    val = np.load(run / "predictions/val.npz")
    counts = np.asarray(result.results["train_counts"])
    scores = {t: compute(logit_adjust(val["logits"], counts, t), val["targets"])["balanced_accuracy"] for t in [0.0, 0.5, 1.0, 1.5]}
    assert scores[tau] == pytest.approx(max(scores.values()))

    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i in range(3):
        Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)).save(img_dir / f"d{i}.png")
    rows = api.predict(run, [img_dir])
    assert len(rows) == 3
    # same images through the model by hand, with the stored tau applied
    meta = json.loads((run / loading.DATA_META).read_text())
    model = loading.load_model(run, loading.load_run_config(run), 10, meta["channels"], counts, torch.device("cpu"))
    from longtail.data import build_pipeline, decode_image_file

    cfg_obj = loading.load_run_config(run)
    pipe = build_pipeline(cfg_obj.data.eval_transforms, meta["norm_mean"], meta["norm_std"], train=False)
    x = pipe.batch(torch.stack([decode_image_file(img_dir / f"d{i}.png", cfg_obj.data, meta["channels"]) for i in range(3)]))
    with torch.no_grad():
        logits = model(x).numpy()
    expected = torch.softmax(torch.as_tensor(logit_adjust(logits, counts, tau)), 1).numpy()
    got = np.array([[r[name] for name in meta["class_names"]] for r in rows])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_cli_predict_writes_csv_with_one_column_per_class(tmp_path):
    cfg = tiny_config(tmp_path, name="cli", train={"epochs": 1})
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    train = subprocess.run([sys.executable, "-m", "longtail.cli", "train", "-c", str(cfg_path)], capture_output=True, text=True)
    assert train.returncode == 0, train.stderr
    assert "balanced" in train.stdout.lower() and "run directory:" in train.stdout
    img = tmp_path / "one.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(img)
    out = tmp_path / "preds.csv"
    run = tmp_path / "runs" / "cli"
    pred = subprocess.run([sys.executable, "-m", "longtail.cli", "predict", str(run), str(img), "--out", str(out)], capture_output=True, text=True)
    assert pred.returncode == 0, pred.stderr
    with open(out) as f:
        rows = list(csv.reader(f))
    names = json.loads((run / loading.DATA_META).read_text())["class_names"]
    top = ["top_1", "top_1_probability", "top_2", "top_2_probability", "top_3", "top_3_probability"]
    assert rows[0] == ["image", "label", "probability", *top, "warning", *names]
    assert len(rows) == 2 and abs(sum(map(float, rows[1][-len(names):])) - 1) < 1e-5
    missing = subprocess.run([sys.executable, "-m", "longtail.cli", "predict", str(run), str(tmp_path / "nope.png")], capture_output=True, text=True)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    ev = subprocess.run([sys.executable, "-m", "longtail.cli", "eval", str(run), "--split", "val"], capture_output=True, text=True)
    assert ev.returncode == 0, ev.stderr


def test_predict_writes_label_top_k_and_warns_about_inputs_unlike_the_training_data(tmp_path, caplog):
    run = longtail.train(tiny_config(tmp_path, name="p", train={"epochs": 1})).run_dir
    names = json.loads((run / loading.DATA_META).read_text())["class_names"]
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.fromarray(np.full((8, 8), 90, np.uint8)).save(imgs / "a_digit.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (150, 200, 3), np.uint8)).save(imgs / "b_photo.png")  # 200x150 colour
    (imgs / "c_broken.png").write_bytes(b"not an image")
    with pytest.raises(LongtailError, match="c_broken.png' cannot be decoded"):
        api.predict(run, [imgs])
    with caplog.at_level(logging.WARNING, logger="longtail"):
        rows = api.predict(run, [imgs], out=tmp_path / "p.csv", overrides=["data.on_bad_image=skip"], top_k=4)
    assert [Path(r["image"]).name for r in rows] == ["a_digit.png", "b_photo.png"]
    for r in rows:
        probs = np.array([r[c] for c in names])
        order = np.argsort(-probs, kind="stable")
        assert r["label"] == r["top_1"] == names[order[0]] and r["probability"] == probs.max()
        assert [r[f"top_{i}"] for i in range(1, 5)] == [names[c] for c in order[:4]]
        assert [r[f"top_{i}_probability"] for i in range(1, 5)] == sorted(probs, reverse=True)[:4]
    assert rows[0]["warning"] == ""
    assert rows[1]["warning"] == "colour input, the model was trained on grey images; 150x200 input, the model was trained on 8x8 images"
    logged = [r.getMessage() for r in caplog.records]
    assert any("skipped 1 unreadable image(s) of 3" in m for m in logged)
    assert sum("far from the training data" in m for m in logged) == 1
    with open(tmp_path / "p.csv") as f:
        written = list(csv.DictReader(f))
    assert written[1]["warning"] == rows[1]["warning"] and written[1]["top_4"] == rows[1]["top_4"]
    # the CLI takes the same overrides as KEY=VALUE among the inputs
    out = subprocess.run([sys.executable, "-m", "longtail.cli", "predict", str(run), str(imgs), "data.on_bad_image=skip", "--top-k", "2",
                          "--out", str(tmp_path / "q.csv")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "far from the training data" in out.stderr
    with open(tmp_path / "q.csv") as f:
        header = next(csv.reader(f))
    assert header[:8] == ["image", "label", "probability", "top_1", "top_1_probability", "top_2", "top_2_probability", "warning"]


def test_batches_pair_each_image_with_its_own_label_in_subsets():
    """Regression: subsets are index views into one tensor; batches must follow the view."""
    from longtail.data import TensorImageDataset
    from longtail.engine.batches import iterate_batches

    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous()
    full = TensorImageDataset(images, np.arange(10), [str(i) for i in range(10)])
    sub = full.subset([7, 2, 9, 4])
    for x, y in iterate_batches(sub, [3, 0, 2, 1], batch_size=3, num_workers=0, seed=0):
        assert torch.equal(x[:, 0, 0, 0].long(), y)
        assert all(torch.equal(x[i], sub[int(j)][0]) for i, j in enumerate([3, 0, 2][: len(y)])) or len(y) == 1


def test_training_learns_digits(tmp_path):
    """End-to-end sanity: a few epochs on balanced digits beat chance by far on the untouched test split."""
    cfg = tiny_config(tmp_path, name="learns", data={"long_tail": None}, train={"epochs": 4})
    result = longtail.train(cfg)
    assert result.results["test"]["accuracy"] > 0.6


@pytest.mark.parametrize("drop_last", [True, False])
def test_data_drop_last_sets_the_images_per_epoch(tmp_path, drop_last):
    """``data.drop_last: false`` trains on every image (the LDAM-DRW / CDB loaders); true drops the partial batch."""
    cfg = tiny_config(tmp_path, name=f"drop_{drop_last}", data={"drop_last": drop_last}, train={"epochs": 1})
    run = longtail.train(cfg).run_dir
    n = sum(json.loads((run / loading.DATA_META).read_text())["train_counts"])
    batch = cfg["data"]["batch_size"]
    assert n > batch and n % batch, "the split must end in a partial batch for this test to mean anything"
    seen = rundir.read_jsonl(run / rundir.METRICS)[0]["train_images"]
    assert seen == (n // batch * batch if drop_last else n)


def test_drop_last_keeps_an_epoch_shorter_than_one_batch():
    from longtail.engine.batches import drops_last_batch

    assert drops_last_batch(100, 32, True) and not drops_last_batch(100, 32, False)
    assert not drops_last_batch(20, 32, True)  # the only batch is partial: keep it


def test_eval_reads_the_last_checkpoint_on_request(tmp_path, capsys):
    """Best (chosen on validation) and last (final epoch) are different models here; eval reads either."""
    from longtail.cli.commands import main

    # stage 2 re-initialises the head and barely moves it (lr 1e-6): its epoch is near chance on
    # validation, so the best checkpoint stays in stage 1 while last.pt holds the stage-2 model
    cfg = decoupled_config(tmp_path, "last", epochs=1, freeze_backbone=True, reinit_head=True, optimizer={"name": "sgd", "lr": 1e-6})
    cfg["train"] = {**cfg["train"], "select_from": "all"}
    result = longtail.train(cfg)
    run = result.run_dir
    assert result.results["best_epoch"] < result.results["epochs"] == 3
    best_preds = np.load(run / "predictions/test.npz")["logits"]

    best = longtail.evaluate(run, split="test")
    last = longtail.evaluate(run, split="test", checkpoint="last")
    assert best["balanced_accuracy"] == pytest.approx(result.results["test"]["balanced_accuracy"])
    assert last["balanced_accuracy"] != pytest.approx(best["balanced_accuracy"])
    # the last model's predictions are stored beside, not over, the best model's
    np.testing.assert_array_equal(np.load(run / "predictions/test.npz")["logits"], best_preds)
    from longtail.metrics import compute

    saved = np.load(run / "predictions/test_last.npz")
    assert compute(saved["logits"], saved["targets"])["balanced_accuracy"] == pytest.approx(last["balanced_accuracy"])

    assert main(["eval", str(run), "--checkpoint", "last"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--checkpoint", "final"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "checkpoint 'final'" in err and "best" in err and "last" in err
    with pytest.raises(LongtailError, match="not one of best, last"):
        longtail.evaluate(run, checkpoint="latest")


def test_channels_last_trains_the_same_model_in_nhwc_layout(tmp_path):
    """train.channels_last changes only the memory layout: the same losses up to float rounding."""
    def run(name: str, channels_last: bool) -> Path:
        train = {"epochs": 2, "progress": False, "tensorboard": False, "channels_last": channels_last}
        return longtail.train(tiny_config(tmp_path, name=name, train=train)).run_dir

    plain, nhwc = run("nchw", False), run("nhwc", True)
    conv = [v for v in model_state(nhwc).values() if v.dim() == 4]
    assert conv and all(v.is_contiguous(memory_format=torch.channels_last) for v in conv)
    losses = [[r["train_loss"] for r in rundir.read_jsonl(d / rundir.METRICS)] for d in (plain, nhwc)]
    assert losses[1][0] == pytest.approx(losses[0][0], rel=1e-5)  # first epoch: summation order only
    assert losses[1][1] == pytest.approx(losses[0][1], rel=5e-3)  # later: rounding compounds through SGD
    # a channels_last run evaluates from its checkpoint to the numbers it reported
    saved = json.loads((nhwc / rundir.RESULTS).read_text())["test"]["accuracy"]
    assert api.evaluate(nhwc)["accuracy"] == pytest.approx(saved)


def test_progress_auto_draws_the_bar_only_on_a_terminal():
    """train.progress: auto (the default) asks the bar's stream; True/False are obeyed as given."""
    import io

    from longtail.catalog.check import load_config
    from longtail.core.schema import TrainConfig
    from longtail.engine.trainer import progress_enabled

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    closed = io.StringIO()
    closed.close()
    assert TrainConfig().progress == "auto"
    assert progress_enabled("auto", Terminal()) is True
    assert progress_enabled("auto", io.StringIO()) is False  # a CI log, a redirected file
    assert progress_enabled("auto", closed) is False and progress_enabled("auto", object()) is False
    assert progress_enabled(True, io.StringIO()) is True and progress_enabled(False, Terminal()) is False
    root = Path(__file__).resolve().parents[2]
    assert load_config(root / "configs" / "quickstart.yaml").train.progress == "auto"
    assert load_config(root / "configs" / "quickstart.yaml", ["train.progress=false"]).train.progress is False


def test_val_loss_is_the_cross_entropy_of_the_validation_logits_and_listeners_hear_every_epoch(tmp_path):
    """One epoch: the best checkpoint is that epoch, so predictions/val.npz holds the logits val_loss was taken from."""
    from scipy.special import softmax
    from sklearn.metrics import log_loss

    reports = []
    run = longtail.train(tiny_config(tmp_path, train={"epochs": 1, "progress": False, "tensorboard": False}), on_epoch=reports.append).run_dir
    (record,) = rundir.read_jsonl(run / rundir.METRICS)
    val = rundir.load_predictions(run, "val")
    expected = log_loss(val["targets"], softmax(val["logits"].astype(np.float64), axis=1), labels=range(val["logits"].shape[1]))
    assert record["val_loss"] == pytest.approx(expected, rel=1e-6)
    assert [(r.epoch, r.total, r.stage, r.metric) for r in reports] == [(1, 1, "main", "balanced_accuracy")]
    assert reports[0].val_score == record["val_balanced_accuracy"] and reports[0].record["train_loss"] == record["train_loss"]
    longtail.train(tiny_config(tmp_path, name="quiet", train={"epochs": 1, "progress": False, "tensorboard": False}))
    assert len(reports) == 1  # the listener is gone once its train() returned
