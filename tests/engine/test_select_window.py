"""train.select_window: the best checkpoint chosen by the mean of the last k competing validation scores."""

from __future__ import annotations

import json

import numpy as np
import pytest

import longtail
from longtail import rundir

from ..helpers import tiny_config


def test_the_best_epoch_is_the_best_window_mean(tmp_path):
    cfg = tiny_config(tmp_path, name="window", train={"epochs": 5, "progress": False, "tensorboard": False, "select_window": 3})
    result = longtail.train(cfg)
    rows = [json.loads(line) for line in (result.run_dir / rundir.METRICS).read_text().splitlines()]
    scores = [r["val_balanced_accuracy"] for r in rows]
    windows = [float(np.mean(scores[max(0, i - 2): i + 1])) for i in range(len(scores))]
    assert [r["val_balanced_accuracy_window"] for r in rows] == pytest.approx(windows)
    best = max(range(len(windows)), key=lambda i: (windows[i], -i))  # the first epoch that reaches the best mean
    assert result.results["best_epoch"] == best + 1
    assert result.results["best_val_score"] == pytest.approx(windows[best])
    assert [i + 1 for i, r in enumerate(rows) if r.get("best")] == [i + 1 for i in range(len(windows)) if windows[i] > max(windows[:i], default=-1)]


def test_a_window_of_one_is_each_epochs_own_score(tmp_path):
    result = longtail.train(tiny_config(tmp_path, name="plain", train={"epochs": 1, "progress": False, "tensorboard": False}))
    rows = [json.loads(line) for line in (result.run_dir / rundir.METRICS).read_text().splitlines()]
    assert all("val_balanced_accuracy_window" not in r for r in rows)
    assert result.results["best_val_score"] == pytest.approx(max(r["val_balanced_accuracy"] for r in rows))
