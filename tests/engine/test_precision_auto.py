"""``train.precision: auto``: the choice from (made-up) device facts and the model, and its record in the run."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import longtail
from longtail import rundir
from longtail.engine import precision as P
from longtail.engine.precision import DeviceFacts, choose_precision, depthwise_share, resolve_precision

from ..helpers import tiny_config

AMX = frozenset({"avx512f", "amx_tile", "amx_bf16"})


@pytest.mark.parametrize("facts, share, expected", [
    (DeviceFacts("cuda", cuda_bf16=True), 0.5, "bf16"),  # a GPU with bf16: always, depthwise or not
    (DeviceFacts("cuda", cuda_bf16=False), 0.0, "32"),
    (DeviceFacts("cpu", cpu_flags=AMX), 0.0, "bf16"),  # AMX and a dense model (ResNet)
    (DeviceFacts("cpu", cpu_flags=AMX), 0.33, "32"),  # AMX, but depthwise-heavy (EfficientNet-Lite0: a third)
    (DeviceFacts("cpu", cpu_flags=frozenset({"avx512f", "avx512_bf16"})), 0.0, "32"),  # bf16 instructions without AMX
    (DeviceFacts("cpu"), 0.0, "32"),
    (DeviceFacts("mps"), 0.0, "32"),
])
def test_the_choice_follows_the_device_and_the_model(facts, share, expected):
    chosen, why = choose_precision(facts, share)
    assert chosen == expected and why


def test_depthwise_share_counts_depthwise_convolutions():
    dense = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3))
    mobile = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, groups=8), nn.Conv2d(8, 16, 1), nn.Conv2d(16, 16, 3, groups=4))
    assert depthwise_share(dense) == 0.0
    assert depthwise_share(mobile) == 0.25  # the grouped (not depthwise) conv does not count
    assert depthwise_share(nn.Linear(3, 2)) == 0.0 and depthwise_share(None) == 0.0


def test_other_precisions_pass_through():
    for value in ("32", "bf16", "16-mixed"):
        assert resolve_precision(value, torch.device("cpu"), nn.Linear(2, 2)) == value


@pytest.mark.parametrize("flags, expected", [(AMX, "bf16"), (frozenset(), "32")])
def test_an_auto_run_records_what_it_chose(tmp_path, monkeypatch, flags, expected):
    monkeypatch.setattr(P, "cpu_has_amx", lambda: "amx_bf16" in flags)  # this CPU, as if it had (or lacked) AMX
    cfg = tiny_config(tmp_path, name=f"auto-{expected}", train={"precision": "auto", "epochs": 1})
    run_dir = longtail.train(cfg).run_dir
    records = rundir.read_jsonl(run_dir / rundir.METRICS)
    assert [r["precision"] for r in records] == [expected]
    assert math.isfinite(records[0]["train_loss"])
    assert rundir.read_json(run_dir / rundir.RESULTS)["test"]["balanced_accuracy"] >= 0
