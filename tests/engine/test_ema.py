"""train.ema: the average matches ema = d * ema + (1 - d) * w step by step, validation and best.pt use it,
last.pt keeps it so a resume continues it exactly, and each stage starts its own."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import longtail
from longtail import rundir
from longtail.core.errors import ConfigError, LongtailError
from longtail.engine import ema as ema_module
from longtail.engine.ema import WeightEMA, ema_decay
from longtail.rundir.checkpoint import load_checkpoint

from ..helpers import decoupled_config, tiny_config


def hand_ema(states: list[dict[str, torch.Tensor]], decay: float, warmup: bool = False) -> dict[str, torch.Tensor]:
    """ema_1 = w_1, then ema_t = d_t * ema_{t-1} + (1 - d_t) * w_t in float64; integer buffers: the last value."""
    avg = {k: v.double() if v.is_floating_point() else v.clone() for k, v in states[0].items()}
    for n, state in enumerate(states[1:], start=1):
        d = min(decay, (1 + n) / (10 + n)) if warmup else decay
        for k, v in state.items():
            avg[k] = d * avg[k] + (1 - d) * v.double() if v.is_floating_point() else v.clone()
    return avg


def assert_matches(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for k in got:
        if got[k].is_floating_point():
            torch.testing.assert_close(got[k].double(), want[k], atol=1e-6, rtol=1e-6, msg=k)
        else:
            assert torch.equal(got[k], want[k]), k


def test_scalar_average_by_hand():
    p = nn.Parameter(torch.zeros(1))
    module = nn.Module()
    module.p = p
    ema = WeightEMA(module, decay=0.5)
    for value in (1.0, 2.0, 3.0):
        p.data.fill_(value)
        ema.update(module)
    # 1 (the first update copies), 0.5 * 1 + 0.5 * 2 = 1.5, 0.5 * 1.5 + 0.5 * 3 = 2.25
    assert ema.model.p.item() == 2.25 and ema.updates == 3
    assert not ema.model.p.requires_grad and module.p.item() == 3.0  # the trained model is left alone
    assert ema_decay(0.999, 1, warmup=True) == pytest.approx(2 / 11)
    assert ema_decay(0.999, 5, warmup=True) == pytest.approx(6 / 15) and ema_decay(0.5, 100, warmup=True) == 0.5
    assert ema_decay(0.999, 1, warmup=False) == 0.999
    with pytest.raises(ConfigError, match="decay must be in"):
        WeightEMA(module, decay=1.0)


@pytest.mark.parametrize("warmup", [False, True])
def test_average_of_sgd_steps_equals_the_hand_computation(warmup):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    ema = WeightEMA(model, decay=0.8, warmup=warmup)
    raw = []
    for _ in range(6):
        x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        ema.update(model)
        raw.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    got = ema.model.state_dict()
    assert_matches(got, hand_ema(raw, 0.8, warmup))
    assert int(got["1.num_batches_tracked"]) == 6  # integer buffers are copied, not averaged
    assert not torch.allclose(got["0.weight"], raw[-1]["0.weight"])  # the average is not the last weights
    assert not torch.allclose(got["1.running_mean"], raw[-1]["1.running_mean"])  # BatchNorm statistics averaged too
    # state_dict / load_state_dict round trip: the same next update
    twin = WeightEMA(model, decay=0.8, warmup=warmup)
    twin.load_state_dict(ema.state_dict())
    for e in (ema, twin):
        e.update(model)
    assert twin.updates == ema.updates == 7
    assert_matches(twin.model.state_dict(), {k: v.double() if v.is_floating_point() else v for k, v in ema.model.state_dict().items()})


def record_updates(monkeypatch, owners: list | None = None) -> list[dict[str, torch.Tensor]]:
    """The trained model's weights at every EMA update the Trainer makes (after each optimizer step);
    ``owners`` gets the average each update went to."""
    seen: list[dict[str, torch.Tensor]] = []
    update = ema_module.WeightEMA.update

    def recording(self, model):
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        if owners is not None:
            owners.append(self)
        update(self, model)

    monkeypatch.setattr(ema_module.WeightEMA, "update", recording)
    return seen


def test_a_run_validates_selects_and_tests_the_average(tmp_path, monkeypatch):
    seen = record_updates(monkeypatch)
    result = longtail.train(tiny_config(tmp_path, train={"epochs": 2, "progress": False, "tensorboard": False, "ema": {"decay": 0.9}}))
    run = result.run_dir
    last, best = load_checkpoint(run / rundir.LAST), load_checkpoint(run / rundir.BEST)
    lines = rundir.read_jsonl(run / rundir.METRICS)
    steps_per_epoch = len(seen) // 2
    assert len(seen) == 2 * steps_per_epoch and last["ema"]["updates"] == len(seen)  # one update per optimizer step
    assert_matches(last["ema"]["model"], hand_ema(seen, 0.9))
    assert_matches(last["model"], {k: v.double() if v.is_floating_point() else v for k, v in seen[-1].items()})  # last.pt: the trained weights
    # best.pt holds the average at its epoch, not the trained weights
    best_epoch = best["progress"]["best_epoch"]
    assert best["ema"]["updates"] == best_epoch * steps_per_epoch
    assert_matches(best["model"], hand_ema(seen[: best_epoch * steps_per_epoch], 0.9))
    trained = seen[best_epoch * steps_per_epoch - 1]
    assert all(not torch.equal(best["model"][k], trained[k]) for k in trained if k.endswith("weight"))
    # validation scored the weights best.pt holds: the final validation (from best.pt) gives the epoch's score
    score = next(r["val_balanced_accuracy"] for r in lines if r["epoch"] == best_epoch)
    assert result.results["val"]["balanced_accuracy"] == pytest.approx(score)
    # `longtail eval --checkpoint last` scores the average at the last epoch too
    from longtail.training.loading import load_model

    model = load_model(run, longtail.load_config(run / rundir.CONFIG), 10, 1, result.results["train_counts"], torch.device("cpu"), rundir.LAST)
    assert_matches(model.state_dict(), {k: v.double() if v.is_floating_point() else v for k, v in last["ema"]["model"].items()})


def test_resume_continues_the_average_exactly(tmp_path):
    cfg = tiny_config(tmp_path, name="straight", train={"epochs": 3, "progress": False, "tensorboard": False, "ema": {"decay": 0.95, "warmup": True}})
    straight = longtail.train(cfg).run_dir
    first = longtail.train({**cfg, "name": "sliced"}, stop_after=1)
    resumed = longtail.train(resume=first.run_dir).run_dir
    for which in (rundir.LAST, rundir.BEST):
        a, b = load_checkpoint(straight / which), load_checkpoint(resumed / which)
        for key in a["model"]:
            assert torch.equal(a["model"][key], b["model"][key]), (which, key)
        assert a["ema"]["updates"] == b["ema"]["updates"]
    a, b = load_checkpoint(straight / rundir.LAST)["ema"]["model"], load_checkpoint(resumed / rundir.LAST)["ema"]["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a resume may not turn the average off (or on, or change it): that would be another training
    with pytest.raises(LongtailError, match=r"train\.ema"):
        longtail.train(resume=resumed, overrides=["train.ema.decay=0.5"])


def test_each_stage_starts_its_own_average(tmp_path, monkeypatch):
    owners: list = []
    seen = record_updates(monkeypatch, owners)
    cfg = decoupled_config(tmp_path, "crt", freeze_backbone=True, reinit_head=True, sampler={"name": "class_balanced"})
    cfg["train"] = {**cfg["train"], "ema": {"decay": 0.9}}
    run = longtail.train(cfg).run_dir
    last, best = load_checkpoint(run / rundir.LAST), load_checkpoint(run / rundir.BEST)
    first, second = owners[0], owners[-1]
    assert first is not second and owners.count(first) + owners.count(second) == len(owners)
    stage2 = [s for s, o in zip(seen, owners) if o is second]
    # stage 2's average starts from its first step (after the head was re-initialised): stage 1's weights are not in it
    assert last["ema"]["updates"] == len(stage2) == owners.count(second)
    assert_matches(last["ema"]["model"], hand_ema(stage2, 0.9))
    assert best["stage_index"] == 1 and best["ema"]["updates"] <= len(stage2)
