"""optimizer.head_max_norm: weight balancing's MaxNorm after every epoch (the official loop) or step, and a 2-stage run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import longtail
from longtail import rundir
from longtail.catalog.check import load_config
from longtail.core.errors import ConfigError
from longtail.core.schema import OptimizerConfig
from longtail.engine.optim import MAX_NORM_KEY, build_optimizer, project_head
from longtail.models.heads import CosineHead, LinearHead
from longtail.rundir.checkpoint import load_checkpoint

from ..helpers import tiny_config, weights_after_each_stop


class TinyModel(nn.Module):
    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.backbone = nn.Linear(2, 2)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def model_with_rows(rows: list[list[float]]) -> TinyModel:
    head = LinearHead(2, len(rows))
    with torch.no_grad():
        head.weight.copy_(torch.tensor(rows))
        head.bias.copy_(torch.tensor([5.0] * len(rows)))
    return TinyModel(head)


def test_one_step_projects_the_rows_outside_and_leaves_the_rest():
    model = model_with_rows([[0.3, 0.4], [3.0, 4.0], [6.0, 8.0]])  # norms 0.5, 5, 10
    inside = model.head.weight[0].detach().clone()
    with torch.no_grad():
        model.backbone.weight.zero_()
        model.backbone.bias.zero_()  # zero features: the head's weight gradient is 0, its bias gradient 1
    cfg = OptimizerConfig(lr=1.0, momentum=0.0, weight_decay=0.0, head_max_norm={"thresh": 2.0, "relative": False, "every": "step"})
    opt = build_optimizer(model, cfg)
    assert opt.param_groups[0][MAX_NORM_KEY] == 2.0
    model(torch.zeros(1, 2)).sum().backward()
    opt.step()
    w = model.head.weight.detach()
    assert torch.equal(w[0], inside)  # inside the ball: untouched
    assert torch.allclose(w[1:], torch.tensor([[1.2, 1.6], [1.2, 1.6]]))  # 2 * w / ||w||, by hand
    assert torch.equal(model.head.bias.detach(), torch.full((3,), 4.0))  # the bias steps (5 - 1) and is never constrained


def test_every_row_within_the_bound_after_a_real_step_and_relative_threshold():
    model = model_with_rows([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])  # norms 1, 2, 5
    opt = build_optimizer(model, OptimizerConfig(lr=0.5, head_max_norm={"thresh": 0.25, "every": "step"}))
    t = 1.0 + 0.25 * (5.0 - 1.0)
    assert opt.param_groups[0][MAX_NORM_KEY] == pytest.approx(t)  # min + thresh * (max - min) at the stage's start
    for seed in range(3):
        x = torch.randn(8, 2, generator=torch.Generator().manual_seed(seed))
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])).backward()
        before = model.head.weight.detach().clone()
        opt.step()
        norms = model.head.weight.detach().norm(dim=1)
        assert (norms <= t * (1 + 1e-6)).all()
        assert not torch.equal(before, model.head.weight.detach())


def test_every_epoch_leaves_the_steps_alone_and_the_loop_projects():
    """every: epoch (the official utils/trainval.py): optimizer steps do not project; project_head does."""
    model = model_with_rows([[0.3, 0.4], [3.0, 4.0], [6.0, 8.0]])
    opt = build_optimizer(model, OptimizerConfig(lr=0.1, momentum=0.0, weight_decay=0.0,
                                                 head_max_norm={"thresh": 2.0, "relative": False}))
    for seed in range(2):
        x = torch.randn(4, 2, generator=torch.Generator().manual_seed(seed))
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 0])).backward()
        opt.step()
    stepped = model.head.weight.detach().clone()
    assert (stepped.norm(dim=1) > 2.0).sum() == 2  # the two long rows are still outside after the steps
    project_head(model, opt)
    assert torch.allclose(model.head.weight.detach(), stepped * torch.clamp(2.0 / stepped.norm(dim=1, keepdim=True), max=1.0))


def test_the_bound_travels_with_the_optimizer_state():
    """A resumed stage reloads t from last.pt's optimizer state instead of recomputing it from other weights."""
    first = model_with_rows([[1.0, 0.0], [0.0, 9.0]])
    saved = build_optimizer(first, OptimizerConfig(head_max_norm={"thresh": 0.5})).state_dict()
    again = model_with_rows([[1.0, 0.0], [0.0, 2.0]])
    opt = build_optimizer(again, OptimizerConfig(head_max_norm={"thresh": 0.5}))
    assert opt.param_groups[0][MAX_NORM_KEY] == pytest.approx(1.5)
    opt.load_state_dict(saved)
    assert opt.param_groups[0][MAX_NORM_KEY] == pytest.approx(5.0)


def test_needs_a_trainable_linear_head():
    with pytest.raises(ConfigError, match="head_max_norm.*CosineHead"):
        build_optimizer(TinyModel(CosineHead(2, 3)), OptimizerConfig(head_max_norm={"thresh": 0.1}))
    with pytest.raises(ValueError, match="relative"):
        OptimizerConfig(head_max_norm={"thresh": 1.5})


def weight_balancing(tmp_path, name="wb"):
    return tiny_config(tmp_path, name=name, stages=[
        {"name": "ce_wd", "epochs": 2, "optimizer": {"name": "sgd", "lr": 0.05, "weight_decay": 5e-3, "no_decay": []}},
        {"name": "maxnorm", "epochs": 2, "freeze_backbone": True, "loss": {"name": "cb", "beta": 0.9999},
         "optimizer": {"name": "sgd", "lr": 0.05, "weight_decay": 0.1, "no_decay": [], "head_max_norm": {"thresh": 0.1}}},
    ])


def test_two_stage_weight_balancing_trains_and_keeps_the_head_in_the_ball(tmp_path):
    result = longtail.train(weight_balancing(tmp_path))
    assert result.finished
    rows = [json.loads(line) for line in (result.run_dir / rundir.METRICS).read_text().splitlines()]
    assert [(r["stage"], r["loss"]) for r in rows] == [("ce_wd", "ce")] * 2 + [("maxnorm", "cb")] * 2
    last = load_checkpoint(result.run_dir / rundir.LAST)
    t = last["optimizer"]["param_groups"][0][MAX_NORM_KEY]
    norms = last["model"]["head.weight"].norm(dim=1)
    assert (norms <= t * (1 + 1e-5)).all() and norms.max() == pytest.approx(t, rel=1e-4)  # the head rows hit the bound
    assert 0.0 <= result.results["test"]["balanced_accuracy"] <= 1.0


def test_resume_inside_the_max_norm_stage_is_exact(tmp_path):
    _, (whole,) = weights_after_each_stop(weight_balancing(tmp_path / "a", "whole"), [None])
    _, (_, resumed) = weights_after_each_stop(weight_balancing(tmp_path / "b", "resumed"), [3, None])
    assert whole.keys() == resumed.keys()
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key


def test_recipe_sets_max_norm_in_its_second_stage_only():
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "cifar10_lt" / "weight_balancing.yaml")
    first, second = cfg.resolved_stages()
    assert first.optimizer.head_max_norm is None
    max_norm = second.optimizer.head_max_norm
    assert max_norm.thresh == 0.1 and max_norm.relative and max_norm.every == "epoch"  # the official per-epoch projection
    assert second.loss.name == "cb" and second.loss.kwargs["base"] == "softmax_bce"  # the official CB_loss 'softmax'

