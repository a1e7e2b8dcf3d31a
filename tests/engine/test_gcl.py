"""GCL's two stages on the engine: the recipe's lr against the official scripts, a tiny run that trains
and resumes exactly (the loss's noise included), and a frozen backbone in the classifier stage."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from longtail import rundir
from longtail.catalog.check import load_config
from longtail.engine.optim import lr_factor
from longtail.rundir.checkpoint import load_checkpoint

from ..helpers import tiny_config, weights_after_each_stop

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "cifar10_lt" / "gcl.yaml"


def official_backbone_lr(epoch: int, lr: float = 0.1) -> float:
    """Keke921/GCLLoss cifar_train_backbone.py adjust_learning_rate (0-based ``epoch``)."""
    epoch += 1
    if epoch <= 5:
        return lr * epoch / 5
    if epoch > 180:
        return lr * 0.01
    if epoch > 160:
        return lr * 0.1
    return lr


def official_classifier_lr(epoch: int, epochs: int = 30, lr: float = 0.1) -> float:
    """Keke921/GCLLoss cifar_train_classifier.py adjust_learning_rate: the first (only) param group's lr."""
    return 0.1 * (0.1 * lr * (1 + math.cos(epoch / epochs * 3.1415926535)))


def test_recipe_lr_is_the_official_schedule_in_every_epoch():
    backbone, classifier = load_config(RECIPE).resolved_stages()
    for e in range(backbone.epochs):
        ours = backbone.optimizer.lr * lr_factor(e, backbone.epochs, backbone.schedule, backbone.optimizer.lr)
        assert ours == pytest.approx(official_backbone_lr(e), rel=1e-12), e
    for e in range(classifier.epochs):
        ours = classifier.optimizer.lr * lr_factor(e, classifier.epochs, classifier.schedule, classifier.optimizer.lr)
        # abs: the official pi is 3.1415926535, which moves the near-zero last epoch by 1e-14
        assert ours == pytest.approx(official_classifier_lr(e), rel=1e-9, abs=1e-12), e


def gcl_config(tmp_path: Path, name: str = "gcl") -> dict:
    return tiny_config(
        tmp_path, name=name, model={"name": "small_cnn", "head": "cosine"},
        train={"epochs": 2, "progress": False, "tensorboard": False, "mixing": {"name": "mixup", "alpha": 1.0}},
        stages=[
            {"name": "backbone", "epochs": 2, "loss": {"name": "gcl", "margin": 0.0, "scale": 30, "noise_mul": 0.5}},
            {"name": "classifier", "epochs": 2, "freeze_backbone": True, "sampler": {"name": "class_balanced"},
             "loss": {"name": "gcl", "margin": 0.1, "scale": 20, "noise_mul": 0.5, "gamma": 1.0},
             "optimizer": {"name": "sgd", "lr": 0.002, "momentum": 0.9, "weight_decay": 2e-4, "no_decay": []}},
        ],
    )


def test_two_stages_train_and_only_the_head_moves_in_the_second(tmp_path):
    run_dir, (after_first, final) = weights_after_each_stop(gcl_config(tmp_path), [2, None])
    rows = [json.loads(line) for line in (run_dir / rundir.METRICS).read_text().splitlines()]
    audit = [(r["stage"], r["loss"], r["sampler"], r["mixing"]) for r in rows]
    assert audit == [("backbone", "gcl", "instance", "mixup")] * 2 + [("classifier", "gcl", "class_balanced", "mixup")] * 2
    assert all(math.isfinite(r["train_loss"]) for r in rows)
    head = [k for k in final if k.startswith("head.")]
    assert head and all(not torch.equal(after_first[k], final[k]) for k in head)
    frozen = [k for k in final if k not in head]
    assert frozen and all(torch.equal(after_first[k], final[k]) for k in frozen)  # parameters and BatchNorm statistics
    results = json.loads((run_dir / rundir.RESULTS).read_text())
    assert 0.0 <= results["test"]["balanced_accuracy"] <= 1.0


def test_resume_in_either_stage_is_exact(tmp_path):
    """The noise comes from the global CPU generator that last.pt saves: stopped runs continue bit for bit."""
    _, (whole,) = weights_after_each_stop(gcl_config(tmp_path / "a", "whole"), [None])
    _, (_, _, resumed) = weights_after_each_stop(gcl_config(tmp_path / "b", "resumed"), [1, 3, None])
    assert whole.keys() == resumed.keys()
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key
    assert load_checkpoint(tmp_path / "b" / "runs" / "resumed" / rundir.LAST)["progress"]["global_epoch"] == 4
