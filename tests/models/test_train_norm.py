"""``Classifier.train_norm``: a frozen backbone whose BatchNorm layers still train (MiSLAS's shift learning on BN)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from longtail.core.errors import ConfigError
from longtail.core.schema import Config, StageConfig
from longtail.models import Classifier
from longtail.models.small_cnn import small_cnn


def _model(norm: str = "batch") -> Classifier:
    torch.manual_seed(0)
    return Classifier(small_cnn(widths=(4, 8), convs_per_stage=1, norm=norm), num_classes=3, class_counts=[20, 5, 2])


def _one_step(model: Classifier) -> dict[str, torch.Tensor]:
    """One SGD step on a random batch in training mode; the state before it."""
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    g = torch.Generator().manual_seed(1)
    model.train()
    loss = nn.functional.cross_entropy(model(torch.randn(6, 3, 8, 8, generator=g)), torch.tensor([0, 1, 2, 0, 1, 2]))
    loss.backward()
    opt.step()
    return before


def _changed(model: Classifier, before: dict[str, torch.Tensor]) -> set[str]:
    return {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}


BN_AFFINE = {"backbone.layers.0.1.weight", "backbone.layers.0.1.bias", "backbone.layers.1.2.weight", "backbone.layers.1.2.bias"}
BN_STATS = {f"backbone.layers.{i}.{j}.{b}" for i, j in ((0, 1), (1, 2)) for b in ("running_mean", "running_var", "num_batches_tracked")}
HEAD = {"head.weight", "head.bias"}


def test_affine_mode_trains_exactly_the_batchnorm_layers_and_the_head():
    model = _model()
    model.freeze_backbone(True)
    assert model.train_norm(True) == 2
    assert {n for n, p in model.named_parameters() if p.requires_grad} == BN_AFFINE | HEAD
    before = _one_step(model)
    assert _changed(model, before) == BN_AFFINE | BN_STATS | HEAD  # the convolutions stay as they were
    for conv in ("backbone.layers.0.0.weight", "backbone.layers.1.1.weight"):
        assert torch.equal(model.state_dict()[conv], before[conv])


def test_stats_mode_updates_only_the_running_statistics_and_the_head():
    """MiSLAS's official shift_bn: model.train() under no_grad, BN's affine parameters in no optimizer."""
    model = _model()
    model.freeze_backbone(True)
    model.train_norm("stats")
    assert {n for n, p in model.named_parameters() if p.requires_grad} == HEAD
    before = _one_step(model)
    assert _changed(model, before) == BN_STATS | HEAD


def test_without_it_a_frozen_backbone_keeps_its_statistics_and_eval_mode_applies_to_all():
    model = _model()
    model.freeze_backbone(True)
    before = _one_step(model)
    assert _changed(model, before) == HEAD
    model.train_norm(True)
    model.eval()
    assert not any(m.training for m in model.modules())  # validation normalises with the running statistics
    model.train()
    assert all(m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_a_new_freezing_rule_resets_it():
    model = _model()
    model.freeze_backbone(True)
    model.train_norm(True)
    model.freeze_backbone(True)  # the next stage's rule: train_norm is not carried over
    model.train()
    assert {n for n, p in model.named_parameters() if p.requires_grad} == HEAD
    assert not any(m.training for m in model.backbone.modules())
    model.train_norm(True)
    model.train_norm(False)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == HEAD


def test_refusals_are_one_line():
    with pytest.raises(ConfigError, match="frozen backbone.*freeze_backbone: true"):
        _model().train_norm(True)
    no_bn = _model(norm="group")
    no_bn.freeze_backbone(True)
    with pytest.raises(ConfigError, match="no BatchNorm layer"):
        no_bn.train_norm("stats")
    with pytest.raises(ValueError, match="train_norm applies to a frozen backbone"):
        StageConfig(epochs=1, train_norm="stats")
    with pytest.raises(ValueError, match="train.module_mode eval"):
        Config.model_validate({"data": {"source": {"name": "digits"}}, "train": {"module_mode": "eval"},
                               "stages": [{"epochs": 1, "freeze_backbone": True, "train_norm": True}]})
