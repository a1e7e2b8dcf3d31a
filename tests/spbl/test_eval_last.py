"""`longtail eval RUN --checkpoint last` on an SPBL run (issue 25).

An SPBL run keeps its CNN checkpoints per pace (``paces/<k>/checkpoints/``) and publishes only the
last pace's best CNN as ``checkpoints/best.pt``; its ``last`` is the last pace's ``last.pt`` (the CNN
after the final epoch of training) with the run's final classifier as the head.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

import longtail
from longtail import rundir
from longtail.core.errors import LongtailError
from longtail.spbl import pipeline
from longtail.spbl.classifier import load_classifier

from .test_pipeline import spbl_config


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    return longtail.train(spbl_config(tmp_path_factory.mktemp("spbl_last"))).run_dir


def test_cli_eval_last_of_a_finished_spbl_run(finished):
    out = subprocess.run([sys.executable, "-m", "longtail.cli", "eval", str(finished), "--checkpoint", "last"], check=False, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "has not validated yet" not in out.stdout + out.stderr
    assert "balanced accuracy" in out.stdout
    assert (finished / rundir.PREDICTIONS / "test_last.npz").is_file()


def test_last_is_the_last_pace_final_epoch_with_the_final_classifier(finished, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    last_pace = run / rundir.PACES / "1"
    # make the last pace's final-epoch CNN tell itself apart from its best one: pace 0's final CNN
    shutil.copyfile(run / rundir.PACES / "0" / rundir.LAST, last_pace / rundir.LAST)
    best = longtail.evaluate(run, split="test", checkpoint="best")
    last = longtail.evaluate(run, split="test", checkpoint="last")
    assert set(last) == set(best)
    z_best = np.load(run / rundir.PREDICTIONS / "test.npz")
    z_last = np.load(run / rundir.PREDICTIONS / "test_last.npz")
    assert not np.allclose(z_best["features"], z_last["features"])  # another CNN: the one in paces/1/checkpoints/last.pt
    # ... scored by the run's final classifier (spbl/classifier.skops), as `best` is
    clf = load_classifier(run / pipeline.FINAL_CLASSIFIER)
    for z in (z_best, z_last):
        assert np.allclose(z["logits"], clf.decision_function(z["features"].astype(np.float64)), atol=1e-4)
    # untouched, where the last pace's best epoch is its final one (2 of 2), last and best are the same model
    if rundir.read_json(finished / rundir.PACES / "1" / pipeline.PACE_RECORD)["cnn_best_epoch"] == 2:
        a, b = longtail.evaluate(finished, split="test", checkpoint="last"), longtail.evaluate(finished, split="test")
        assert (a["accuracy"], a["balanced_accuracy"]) == pytest.approx((b["accuracy"], b["balanced_accuracy"]))


def test_last_of_an_unfinished_spbl_run_says_why_in_one_line(tmp_path):
    run = longtail.train(spbl_config(tmp_path), stop_after=3).run_dir  # inside the last pace
    assert (run / rundir.PACES / "1" / rundir.LAST).is_file() and not (run / pipeline.FINAL_CLASSIFIER).exists()
    with pytest.raises(LongtailError, match=r"SPBL run whose last pace \(1\) has not finished") as e:
        longtail.evaluate(run, checkpoint="last")
    assert "\n" not in str(e.value) and "--resume" in str(e.value)
