"""``16-mixed`` loss scaling: the engine's optimizer step with ``torch.amp.GradScaler``, on CPU.

torch's GradScaler runs on CPU tensors (``GradScaler("cpu")``), so the scaling logic the engine adds
is checked here against plain SGD: a finite step equals the unscaled step, an inf/NaN gradient skips
the step (weights unchanged, scale halved, the skip reported), clipping acts on unscaled gradients.
What only a GPU can check (CI has none): fp16 autocast itself (``train.precision=16-mixed`` needs
CUDA) and real fp16 overflow in the first steps of a run, which shows up as ``skipped_steps`` > 0 in
metrics.jsonl.
"""

from __future__ import annotations

import copy

import pytest
import torch

import longtail
from longtail import rundir
from longtail.engine.device import grad_scaler, optimizer_step

from ..helpers import tiny_config


def _model_and_batch() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.nn.Linear(5, 3), torch.randn(8, 5), torch.randint(0, 3, (8,))


def _loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(model(x), y)


def _plain_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, clip: float | None) -> torch.nn.Module:
    ref = copy.deepcopy(model)
    opt = torch.optim.SGD(ref.parameters(), lr=0.5)
    _loss(ref, x, y).backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(ref.parameters(), clip)
    opt.step()
    return ref


@pytest.mark.parametrize("clip", [None, 0.05])
def test_a_scaled_step_equals_the_unscaled_step(clip):
    model, x, y = _model_and_batch()
    expected = _plain_step(model, x, y, clip)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    assert optimizer_step(_loss(model, x, y), opt, scaler, model.parameters(), clip) is True
    for p, q in zip(model.parameters(), expected.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    assert scaler.get_scale() == 2.0**12  # no growth before growth_interval finite steps


def test_an_inf_gradient_skips_the_step_and_halves_the_scale():
    model, x, y = _model_and_batch()
    before = [p.detach().clone() for p in model.parameters()]
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loss = _loss(model, x, y) * torch.tensor(float("inf"))  # the fp16 overflow a GPU run can hit
    assert optimizer_step(loss, opt, scaler, model.parameters(), grad_clip=None) is False
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p, b)
    assert scaler.get_scale() == 2.0**11
    # the next finite step runs again at the lowered scale
    opt.zero_grad()
    assert optimizer_step(_loss(model, x, y), opt, scaler, model.parameters(), grad_clip=None) is True


def test_the_scaler_grows_after_growth_interval_finite_steps():
    model, x, y = _model_and_batch()
    scaler = torch.amp.GradScaler("cpu", init_scale=8.0, growth_interval=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(2):
        opt.zero_grad()
        assert optimizer_step(_loss(model, x, y), opt, scaler, model.parameters(), grad_clip=None) is True
    assert scaler.get_scale() == 16.0  # growth is not mistaken for a skipped step


def test_only_16_mixed_enables_the_scaler_and_a_disabled_one_is_a_plain_step():
    cpu = torch.device("cpu")
    assert grad_scaler(cpu, "16-mixed").is_enabled()
    assert not grad_scaler(cpu, "32").is_enabled() and not grad_scaler(cpu, "bf16").is_enabled()
    model, x, y = _model_and_batch()
    expected = _plain_step(model, x, y, None)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    assert optimizer_step(_loss(model, x, y), opt, grad_scaler(cpu, "32"), model.parameters(), None) is True
    for p, q in zip(model.parameters(), expected.parameters()):
        assert torch.equal(p, q)


def test_metrics_jsonl_counts_skipped_steps(tmp_path):
    run = longtail.train(tiny_config(tmp_path, train={"epochs": 1, "progress": False, "tensorboard": False})).run_dir
    assert [r["skipped_steps"] for r in rundir.read_jsonl(run / rundir.METRICS)] == [0]  # fp32: never skips
