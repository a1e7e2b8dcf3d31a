"""RIDE on the one training loop: a tiny multi-expert run trains with DRW, resumes exactly, and its
predict / export give the aggregated logits (the mean of the experts)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import longtail
from longtail import api, rundir
from longtail.catalog.check import load_config
from longtail.inference.export import export, run_exported, sidecar_path
from longtail.training import loading

from ..helpers import tiny_config, weights_after_each_stop
from ..inference.test_export import deployment_input, digit_images


def ride_config(tmp_path, name="ride"):
    return tiny_config(
        tmp_path, name=name,
        model={"name": "ride_resnet32", "num_experts": 3, "blocks": 1, "head": "cosine"},
        loss={"name": "ride"},
        class_weights={"name": "drw", "start_epoch": 2},  # re-weighted (and distribution-aware temperature) from epoch 2
        train={"epochs": 3, "progress": False, "tensorboard": False},
    )


@pytest.fixture(scope="module")
def ride_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ride")
    return longtail.train(ride_config(tmp)), tmp


def test_trains_and_logs_the_ride_loss_and_drw(ride_run):
    result, _ = ride_run
    assert result.finished
    rows = [json.loads(line) for line in (result.run_dir / rundir.METRICS).read_text().splitlines()]
    assert [r["loss"] for r in rows] == ["ride"] * 3
    assert all(np.isfinite(r["train_loss"]) for r in rows)
    assert 0.0 <= result.results["test"]["balanced_accuracy"] <= 1.0


def test_resume_is_exact(tmp_path):
    _, (whole,) = weights_after_each_stop(ride_config(tmp_path / "a", "whole"), [None])
    _, (_, _, resumed) = weights_after_each_stop(ride_config(tmp_path / "b", "resumed"), [1, 2, None])
    assert whole.keys() == resumed.keys()
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key


def test_predict_and_export_give_the_mean_of_the_experts(ride_run, tmp_path):
    result, tmp = ride_run
    run_dir = result.run_dir
    images = digit_images(tmp_path / "imgs")
    path = export(run_dir, "onnx", tmp_path / "ride.onnx")
    meta = json.loads(sidecar_path(path).read_text())
    x = deployment_input(images, meta)
    exported = run_exported(path, x)
    rows = api.predict(run_dir, images)
    predicted = np.array([[r[c] for c in meta["class_names"]] for r in rows])
    # the trained model by hand: normalise, take each expert's logits, average them, softmax
    cfg = load_config(run_dir / rundir.CONFIG)
    data = loading.read_data_meta(run_dir)
    model = loading.load_model(run_dir, cfg, len(data["class_names"]), data["channels"], data["train_counts"], torch.device("cpu"))
    mean, std = (torch.tensor(data[k]).view(1, -1, 1, 1) for k in ("norm_mean", "norm_std"))
    with torch.no_grad():
        out = model((torch.from_numpy(x) - mean) / std, return_experts=True)
    by_hand = torch.softmax(out.experts.mean(1), dim=1).numpy()
    assert out.experts.shape[1] == 3
    assert np.abs(exported - by_hand).max() < 1e-4 and np.abs(predicted - by_hand).max() < 1e-4
