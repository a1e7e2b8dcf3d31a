"""A MiSLAS-like run on the tiny fixtures: mixup stage, then frozen backbone + scaled head + LAS, with train_norm."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import longtail
from longtail import rundir
from longtail.catalog.check import load_config
from longtail.engine.optim import build_optimizer, lr_factor, set_epoch_lr
from longtail.models import Classifier
from longtail.models.small_cnn import small_cnn

from ..helpers import tiny_config, weights_after_each_stop

ROOT = Path(__file__).resolve().parents[2]


def mislas(tmp_path: Path, name: str = "mislas", train_norm: bool | str = True) -> dict:
    return tiny_config(tmp_path, name=name, stages=[
        {"name": "mixup", "epochs": 2, "mixing": {"name": "mixup", "alpha": 1.0}},
        {"name": "las", "epochs": 2, "freeze_backbone": True, "train_norm": train_norm, "head": "scaled_linear",
         "sampler": {"name": "class_balanced"}, "loss": {"name": "las", "smooth_head": 0.3, "smooth_tail": 0.0},
         "optimizer": {"name": "sgd", "lr": 0.05, "no_decay": [], "lr_mult": {"head.weight": 0.5, "head.bias": 0.5}}},
    ])


def _kinds(state: dict[str, torch.Tensor]) -> dict[str, set[str]]:
    """The backbone's state keys by kind: convolution weights, BatchNorm affine parameters, BatchNorm statistics."""
    bn = {k.rsplit(".", 1)[0] for k in state if k.endswith("running_mean")}
    kinds: dict[str, set[str]] = {"conv": set(), "affine": set(), "stats": set()}
    for key in state:
        module, leaf = key.rsplit(".", 1)
        if not key.startswith("backbone."):
            continue
        if module in bn:
            kinds["affine" if leaf in ("weight", "bias") else "stats"].add(key)
        else:
            kinds["conv"].add(key)
    return kinds


@pytest.mark.parametrize("mode", [True, "stats"])
def test_stage_two_trains_the_head_and_batchnorm_and_leaves_the_convolutions(tmp_path, mode):
    run_dir, (after_stage1, final) = weights_after_each_stop(mislas(tmp_path, train_norm=mode), [2, None])
    kinds = _kinds(final)
    assert kinds["conv"] and kinds["affine"] and kinds["stats"]
    changed = {k for k in after_stage1 if not torch.equal(after_stage1[k], final[k])}
    assert not changed & kinds["conv"]  # the frozen convolutions
    assert kinds["stats"] - {k for k in kinds["stats"] if k.endswith("num_batches_tracked")} <= changed  # statistics follow stage 2
    assert (kinds["affine"] <= changed) if mode is True else not (changed & kinds["affine"])
    assert {"head.weight", "head.bias"} <= changed and "head.logit_scales" in final  # the stage-1 head trained on, scaled
    rows = [json.loads(line) for line in (run_dir / rundir.METRICS).read_text().splitlines()]
    assert [(r["stage"], r["loss"], r["mixing"], r["sampler"]) for r in rows] == (
        [("mixup", "ce", "mixup", "instance")] * 2 + [("las", "las", None, "class_balanced")] * 2)
    assert rows[-1]["trainable_tensors"] == 3 + (len(kinds["affine"]) if mode is True else 0)
    results = json.loads((run_dir / rundir.RESULTS).read_text())
    assert 0.0 <= results["test"]["balanced_accuracy"] <= 1.0


def test_resume_inside_the_train_norm_stage_is_exact(tmp_path):
    _, (whole,) = weights_after_each_stop(mislas(tmp_path / "a", "whole"), [None])
    _, (_, resumed) = weights_after_each_stop(mislas(tmp_path / "b", "resumed"), [3, None])
    assert whole.keys() == resumed.keys()
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key


def test_the_finished_run_evaluates_from_its_directory(tmp_path):
    run = longtail.train(mislas(tmp_path, train_norm="stats"))
    again = longtail.evaluate(run.run_dir, split="test")
    assert again["balanced_accuracy"] == pytest.approx(run.results["test"]["balanced_accuracy"])


def test_recipe_stage_two_is_the_official_cifar10_stage2():
    cfg = load_config(ROOT / "configs" / "cifar10_lt" / "mislas.yaml")
    first, second = cfg.resolved_stages()
    assert first.mixing is not None and first.mixing.name == "mixup" and second.mixing is None
    assert second.freeze_backbone and second.train_norm is False and second.head == "scaled_linear"  # shift_bn False on CIFAR-10
    assert second.loss.name == "las" and second.loss.kwargs == {"smooth_head": 0.3, "smooth_tail": 0.0, "shape": "concave"}
    # keys the header names (so tests/test_protocols.py lets them differ): checked here against the official values
    assert second.sampler.kwargs == {"num_samples": 12544}  # 98 batches of 128 per epoch
    assert second.optimizer.lr_mult == {"head.weight": 0.5, "head.bias": 0.5}  # lr_factor 0.5 on the classifier
    assert first.optimizer.weight_decay == second.optimizer.weight_decay == 2e-4 and first.optimizer.no_decay == second.optimizer.no_decay == []


def test_recipe_learning_rates_are_the_official_ones_in_every_epoch():
    """train_stage1.py adjust_learning_rate (cos False) and train_stage2.py's cosine with lr_factor 0.5 on the classifier."""
    first, second = load_config(ROOT / "configs" / "cifar10_lt" / "mislas.yaml").resolved_stages()
    for e in range(first.epochs):
        one_based = e + 1
        official = 0.1 * one_based / 5 if one_based <= 5 else 0.1 * (0.01 if one_based > 180 else 0.1 if one_based > 160 else 1.0)
        assert first.optimizer.lr * lr_factor(e, first.epochs, first.schedule, first.optimizer.lr) == pytest.approx(official)
    model = Classifier(small_cnn(widths=(4,), convs_per_stage=1), num_classes=10)
    model.freeze_backbone(True)
    model.set_head(second.head)
    optimizer = build_optimizer(model, second.optimizer)
    for e in range(second.epochs):
        set_epoch_lr(optimizer, e, second.epochs, second.schedule, second.optimizer.lr)
        official = 0.5 * 0.1 * (1 + math.cos(e / 10 * 3.1415926535))
        lrs = {name: g["lr"] for g in optimizer.param_groups for name in g["param_names"]}
        assert lrs == pytest.approx({"head.weight": 0.5 * official, "head.bias": 0.5 * official, "head.logit_scales": official})
