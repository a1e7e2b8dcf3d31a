"""MiSLAS's stage-2 head (``scaled_linear``): the trained linear head, trained on, times learned per-class logit scales."""

from __future__ import annotations

import pytest
import torch

from longtail.core.errors import ConfigError
from longtail.core.schema import OptimizerConfig
from longtail.engine.optim import param_groups
from longtail.models import Classifier
from longtail.models.heads import LinearHead, LWSHead, ScaledLinearHead
from longtail.models.small_cnn import small_cnn
from longtail.models.weights import load_checkpoint_weights

COUNTS = [50, 20, 5, 1]


def _model() -> Classifier:
    torch.manual_seed(0)
    model = Classifier(small_cnn(widths=(4, 8), convs_per_stage=1), num_classes=4, class_counts=COUNTS)
    with torch.no_grad():
        model.head.bias.copy_(torch.tensor([0.5, -0.25, 1.0, 0.0]))
    return model


def test_starts_as_the_linear_head_and_scales_the_whole_logit():
    model = _model()
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    before = model(x).detach()
    model.set_head("scaled_linear")
    assert isinstance(model.head, ScaledLinearHead) and model.head_kind == "scaled_linear"
    assert torch.equal(model(x).detach(), before)  # scales of 1: exactly the trained head
    assert {n for n, p in model.head.named_parameters() if p.requires_grad} == {"weight", "bias", "logit_scales"}
    s = torch.tensor([2.0, 0.5, 1.0, 3.0])
    with torch.no_grad():
        model.head.logit_scales.copy_(s)
    assert torch.allclose(model(x).detach(), before * s)  # learned_norm * (W x + b): the bias is scaled too (not LWS's)


def test_folds_back_into_a_linear_head_and_resets():
    model = _model()
    model.set_head("scaled_linear")
    with torch.no_grad():
        model.head.logit_scales.copy_(torch.tensor([2.0, 0.5, 1.0, 3.0]))
    features = torch.randn(5, 8)
    scaled = model.head(features).detach()
    model.set_head("linear")
    assert type(model.head) is LinearHead
    assert torch.allclose(model.head(features).detach(), scaled, atol=1e-6)
    model.set_head("scaled_linear")
    model.reset_head()
    assert torch.equal(model.head.logit_scales.detach(), torch.ones(4))


def test_from_lws_keeps_the_folded_head_and_lws_from_it_is_refused():
    model = _model()
    model.set_head("lws")
    with torch.no_grad():
        model.head.scales.copy_(torch.tensor([1.5, 1.0, 0.5, 2.0]))
    features = torch.randn(5, 8)
    before = model.head(features).detach()
    model.set_head("scaled_linear")
    assert torch.allclose(model.head(features).detach(), before, atol=1e-6)
    with pytest.raises(ConfigError, match="'lws' rescales a trained linear head.*scaled_linear"):
        model.set_head("lws")
    assert not isinstance(model.head, LWSHead)


def test_lr_mult_gives_the_classifier_its_own_group():
    """MiSLAS's two param groups: the classifier at lr_factor x lr, the scales at lr (train_stage2.py)."""
    model = _model()
    model.freeze_backbone(True)
    model.set_head("scaled_linear")
    groups = param_groups(model, OptimizerConfig(lr=0.1, weight_decay=2e-4, no_decay=[], lr_mult={"head.weight": 0.5, "head.bias": 0.5}))
    by_mult = {g["lr_mult"]: sorted(g["param_names"]) for g in groups}
    assert by_mult == {0.5: ["head.bias", "head.weight"], 1.0: ["head.logit_scales"]}
    assert all(g["weight_decay"] == 2e-4 for g in groups)


def test_a_checkpoint_with_logit_scales_switches_the_head():
    trained = _model()
    trained.set_head("scaled_linear")
    with torch.no_grad():
        trained.head.logit_scales.copy_(torch.tensor([2.0, 0.5, 1.0, 3.0]))
    fresh = _model()
    load_checkpoint_weights(fresh, trained.state_dict(), "checkpoint")
    assert isinstance(fresh.head, ScaledLinearHead)
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(fresh.eval()(x), trained.eval()(x))
