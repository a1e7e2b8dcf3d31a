"""Epoch-wise lr schedules against torch's own schedulers."""

from __future__ import annotations

import pytest
import torch

from longtail.core.schema import ScheduleConfig
from longtail.engine.optim import lr_factor


def torch_cyclic(base_lr: float, max_lr: float, step_size_up: int, epochs: int) -> list[float]:
    """lr of each epoch under torch.optim.lr_scheduler.CyclicLR(triangular2) stepped once per epoch (HMLoss ISIC)."""
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=max_lr)
    sched = torch.optim.lr_scheduler.CyclicLR(opt, base_lr=base_lr, max_lr=max_lr, step_size_up=step_size_up,
                                              mode="triangular2", cycle_momentum=False)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def ours(cfg: ScheduleConfig, max_lr: float, epochs: int) -> list[float]:
    return [max_lr * lr_factor(e, epochs, cfg, max_lr) for e in range(epochs)]


@pytest.mark.parametrize("half, epochs", [(3, 25), (1, 8), (5, 40)])
def test_triangular2_matches_torch_cyclic_lr_epoch_by_epoch(half, epochs):
    cfg = ScheduleConfig(name="cyclic", cycle_epochs=half, base_lr=1e-5)
    expected = torch_cyclic(1e-5, 1e-3, half, epochs)
    assert ours(cfg, 1e-3, epochs) == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert max(expected[2 * half :]) < max(expected[: 2 * half])  # several cycles, amplitude halving


def test_hmloss_isic_schedule_and_its_continuation_into_a_second_stage():
    """HMLoss ISIC: CyclicLR(base 1e-5, max 1e-3, step_size_up 2000 default) over 100 epochs, CE then HML from epoch 50.
    Split into stages of 49 and 51 epochs, the second with epoch_offset 49 continues the same ramp."""
    expected = torch_cyclic(1e-5, 1e-3, 2000, 100)
    whole = ScheduleConfig(name="cyclic", cycle_epochs=2000, base_lr=1e-5)
    assert ours(whole, 1e-3, 100) == pytest.approx(expected, rel=1e-9)
    first = ours(whole, 1e-3, 49)
    second = ours(ScheduleConfig(name="cyclic", cycle_epochs=2000, base_lr=1e-5, epoch_offset=49), 1e-3, 51)
    assert first + second == pytest.approx(expected, rel=1e-9)


def test_epoch_offset_on_cosine_is_the_tail_of_the_longer_schedule():
    cfg = ScheduleConfig(name="cosine")
    tail = [lr_factor(e, 4, ScheduleConfig(name="cosine", epoch_offset=6), 0.1) for e in range(4)]
    assert tail == pytest.approx([lr_factor(e, 10, cfg, 0.1) for e in range(6, 10)])
