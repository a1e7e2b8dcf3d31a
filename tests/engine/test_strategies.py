"""Training strategies end to end: CDB's validation loop, LWS and fractional-freeze stages, mixup, the per-stage audit trail."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import longtail
from longtail import rundir
from longtail.catalog.check import load_config
from longtail.core.errors import ConfigError
from longtail.losses.cdb import CDBCrossEntropy
from longtail.models import build_model
from longtail.training import loading

from ..helpers import decoupled_config, tiny_config, weights_after_each_stop


def metrics_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / rundir.METRICS).read_text().splitlines()]


def test_cdb_weights_follow_each_validation(tmp_path, monkeypatch):
    """After every validation the loss holds max(1 - acc_c, eps)^tau normalised to sum C, fed by the real val accuracy."""
    seen: list[tuple[np.ndarray, torch.Tensor]] = []
    used_in_training: list[torch.Tensor] = []
    original_hook, original_compute = CDBCrossEntropy.on_validation_end, CDBCrossEntropy.compute

    def recording_hook(self, per_class_accuracy):
        original_hook(self, per_class_accuracy)
        seen.append((np.array(per_class_accuracy, dtype=float), self.cdb_weights.clone()))

    def recording_compute(self, *args, **kwargs):
        if self.training and len(used_in_training) == len(seen):  # first batch after each validation
            used_in_training.append(self.cdb_weights.clone())
        return original_compute(self, *args, **kwargs)

    monkeypatch.setattr(CDBCrossEntropy, "on_validation_end", recording_hook)
    monkeypatch.setattr(CDBCrossEntropy, "compute", recording_compute)
    tau = 2.0
    run = longtail.train(tiny_config(tmp_path, loss={"name": "cdb_ce", "tau": tau}, train={"epochs": 3, "progress": False, "tensorboard": False})).run_dir

    rows = metrics_rows(run)
    assert len(seen) == 3 == len(rows)
    torch.testing.assert_close(used_in_training[0], torch.ones(10))  # before the first validation
    for (acc, weights), row, next_used in zip(seen, rows, used_in_training[1:] + [None], strict=True):
        assert np.nanmean(acc) == pytest.approx(row["val_balanced_accuracy"])  # the validation's own per-class recall
        expected = np.maximum(1.0 - acc, 0.01) ** tau
        expected = expected / expected.sum() * len(acc)
        np.testing.assert_allclose(weights.numpy(), expected, rtol=1e-5)
        if next_used is not None:  # the next epoch trains with them
            torch.testing.assert_close(next_used, weights)
    assert any(not torch.equal(seen[0][1], w) for _, w in seen[1:]), "weights never changed between validations"


def test_lws_stage_learns_only_the_scales_and_predicts(tmp_path):
    cfg = decoupled_config(tmp_path, "lws", freeze_backbone=True, head="lws", sampler={"name": "class_balanced"})
    first, (before, after) = weights_after_each_stop(cfg, [2, None])
    results = json.loads((first / rundir.RESULTS).read_text())
    assert set(after) - set(before) == {"head.scales"}
    torch.testing.assert_close(after["head.weight"], before["head.weight"])  # the linear head, now frozen
    for key in before:
        if not key.startswith("head."):
            torch.testing.assert_close(after[key], before[key], msg=key)
    assert not torch.allclose(after["head.scales"], torch.ones(10))
    # the LWS model comes back from disk and serves predictions
    model = loading.load_model(first, loading.load_run_config(first), 10, 1, results["train_counts"], torch.device("cpu"))
    assert model.head_kind == "lws"
    assert 0.0 <= results["test"]["balanced_accuracy"] <= 1.0


def test_trainable_fraction_stage_freezes_the_first_tensors_then_releases_them(tmp_path):
    cfg = tiny_config(
        tmp_path,
        name="fraction",
        stages=[
            {"name": "warm", "epochs": 1},
            {"name": "finetune", "epochs": 1, "trainable_fraction": 0.5},
            {"name": "all", "epochs": 1},
        ],
    )
    run, (state1, state2, state3) = weights_after_each_stop(cfg, [1, 2, None])
    params = [n for n, _ in build_model(loading.load_run_config(run).model, 10, 1).named_parameters()]
    frozen = params[: len(params) // 2]
    assert all(torch.equal(state1[n], state2[n]) for n in frozen)
    assert all(not torch.equal(state1[n], state2[n]) for n in params[len(params) // 2 :])
    assert any(not torch.equal(state2[n], state3[n]) for n in frozen)  # the last stage trains everything again
    rows = metrics_rows(run)
    assert [r["trainable_tensors"] for r in rows] == [len(params), len(params) - len(frozen), len(params)]


def test_stage_config_rejects_two_freezing_rules(tmp_path):
    with pytest.raises(ConfigError, match="either freeze_backbone or trainable_fraction"):
        load_config(raw=tiny_config(tmp_path, stages=[{"epochs": 1, "freeze_backbone": True, "trainable_fraction": 0.3}]))
    with pytest.raises(ConfigError, match="trainable_fraction"):
        load_config(raw=tiny_config(tmp_path, stages=[{"epochs": 1, "trainable_fraction": 32}]))


def test_metrics_record_each_stage_loss_sampler_and_weights(tmp_path):
    cfg = tiny_config(
        tmp_path,
        name="audit",
        stages=[
            {"name": "ce", "epochs": 1},
            {"name": "hml", "epochs": 1, "loss": {"name": "hml"}, "class_weights": {"name": "inverse_frequency"}, "sampler": {"name": "square_root"}},
        ],
    )
    rows = metrics_rows(longtail.train(cfg).run_dir)
    audit = [(r["stage"], r["loss"], r["sampler"], r["class_weights"], r["mixing"]) for r in rows]
    assert audit == [("ce", "ce", "instance", "uniform", None), ("hml", "hml", "square_root", "inverse_frequency", None)]


def test_mixup_trains_end_to_end_and_changes_training(tmp_path):
    plain = longtail.train(tiny_config(tmp_path, name="plain")).run_dir
    mixed = longtail.train(tiny_config(tmp_path, name="mixup", train={"epochs": 2, "progress": False, "tensorboard": False, "mixing": {"name": "mixup", "alpha": 1.0}})).run_dir
    plain_rows, mixed_rows = metrics_rows(plain), metrics_rows(mixed)
    assert [r["mixing"] for r in mixed_rows] == ["mixup", "mixup"]
    assert all(np.isfinite(r["train_loss"]) for r in mixed_rows)
    # same seed, same data order: only the mixing differs, so the losses must too
    assert mixed_rows[0]["train_loss"] != pytest.approx(plain_rows[0]["train_loss"])
    results = json.loads((mixed / rundir.RESULTS).read_text())
    assert 0.0 <= results["test"]["balanced_accuracy"] <= 1.0
