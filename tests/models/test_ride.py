"""RIDE's multi-expert ResNet-32 and the multi-expert interface (models/experts.py).

Official: frank-xwang/RIDE-LongTailRecognition model/ldam_drw_resnets/ride_resnet_cifar.py (shared conv1, bn1,
layer1; per expert layer2s / layer3s, 24 / 48 wide with reduce_dimension, NormedLinear times s = 30; the
output is the mean of the experts' logits).
"""

from __future__ import annotations

import pytest
import torch

from longtail.core.errors import ConfigError
from longtail.core.registry import LOSSES
from longtail.core.schema import ModelConfig
from longtail.engine.steps import model_outputs
from longtail.losses import create
from longtail.models import ExpertHeads, ExpertOutput, build_model, count_parameters

COUNTS = [40, 20, 10, 5, 2]
C = len(COUNTS)


def ride_model(**kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(name="ride_resnet32", head=kwargs.pop("head", "cosine"), **kwargs), C, 3, COUNTS)


def official_parameter_count(num_classes: int, experts: int, widths: tuple[int, int] = (24, 48), blocks: int = 5) -> int:
    """Weights of the official RIDE ResNet-32 by hand: 3x3 convs without bias, BN (weight, bias), option-A shortcuts."""
    def stage(cin: int, width: int) -> int:
        first = 9 * cin * width + 9 * width * width + 4 * width
        return first + (blocks - 1) * (2 * 9 * width * width + 4 * width)

    shared = 9 * 3 * 16 + 2 * 16 + stage(16, 16)
    per_expert = stage(16, widths[0]) + stage(widths[0], widths[1]) + widths[1] * num_classes  # NormedLinear: no bias
    return shared + experts * per_expert


@pytest.mark.parametrize("experts", [1, 2, 3])
def test_shape_and_parameters_are_the_officials(experts):
    model = ride_model(num_experts=experts)
    assert count_parameters(model) == official_parameter_count(C, experts)
    assert count_parameters(ride_model(num_experts=3, reduce_dimension=False)) == official_parameter_count(C, 3, (32, 64))
    assert model.feature_dim == 48 * experts and isinstance(model.head, ExpertHeads) and model.head.scale == 30.0
    assert model.arch == "ride_resnet32" and model.head_kind == "cosine"


def test_the_aggregate_is_the_mean_of_the_experts_and_plain_calls_see_only_it():
    model = ride_model().eval()
    x = torch.randn(4, 3, 32, 32)
    out = model(x, return_experts=True)
    assert isinstance(out, ExpertOutput) and out.experts.shape == (4, 3, C) and out.features.shape == (4, 144)
    assert torch.equal(out.logits, out.experts.mean(1))
    logits, features = model(x, return_features=True)
    assert torch.equal(model(x), out.logits) and torch.equal(logits, out.logits) and torch.equal(features, out.features)
    # each expert: s * cos(its own pooled features, its own class vectors), so |z| <= 30
    per_expert = model.backbone.expert_features(x)
    head = model.head.experts[1]
    cos = torch.nn.functional.normalize(per_expert[:, 1], dim=1) @ torch.nn.functional.normalize(head.weight, dim=1).T
    assert torch.allclose(out.experts[:, 1], 30 * cos, atol=1e-5) and out.experts.abs().max() <= 30 + 1e-4


def test_experts_share_the_trunk_and_nothing_else():
    model = ride_model()
    b = model.backbone
    assert b.trunk.stage_names == ["layer1"] and len(b.experts) == 3
    ids = [{id(p) for p in branch.parameters()} for branch in b.experts]
    assert not (ids[0] & ids[1]) and not (ids[1] & ids[2])
    assert [m.out_channels for m in b.experts[0].modules() if isinstance(m, torch.nn.Conv2d)][-1] == 48


@pytest.mark.parametrize("name", [n for n in LOSSES.names()
                                  if not LOSSES.get(n).needs_experts and not getattr(LOSSES.get(n), "needs_contrast", False)])
def test_every_other_loss_trains_the_multi_expert_model(name):
    """A loss without needs_experts sees the aggregate (and features), and its gradient reaches every expert."""
    model = ride_model(num_experts=2, blocks=1).train()
    x, y = torch.randn(8, 3, 16, 16), torch.arange(8) % C
    loss = create(name, COUNTS)
    torch.manual_seed(1)
    logits, features, extra = model_outputs(model, x, loss)
    assert extra == {} and logits.shape == (8, C)
    value = loss(logits, y, features if loss.needs_features else None)
    value.backward()
    assert torch.isfinite(value)
    for branch in model.backbone.experts:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in branch.parameters()), name


def test_ride_loss_gets_the_experts_through_the_train_step():
    model = ride_model(num_experts=3, blocks=1).train()
    x, y = torch.randn(8, 3, 16, 16), torch.arange(8) % C
    loss = create("ride", COUNTS)
    logits, _, extra = model_outputs(model, x, loss)
    assert extra["experts"].shape == (8, 3, C) and torch.allclose(logits, extra["experts"].mean(1))
    loss(logits, y, experts=extra["experts"]).backward()
    for head in model.head.experts:
        assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0


def test_single_head_models_have_no_experts_to_give():
    for cfg in (ModelConfig(name="small_cnn", widths=[8, 16]), ModelConfig(name="bbn_resnet32")):
        model = build_model(cfg, C, 3, COUNTS)
        with pytest.raises(ConfigError, match="single head .*ride_resnet32") as info:
            model(torch.randn(2, 3, 16, 16), return_experts=True)
        assert "\n" not in str(info.value)


def test_stage_heads_metadata_and_bad_options_are_one_line():
    model = ride_model()
    model.set_head("cosine")  # the current kind: nothing changes
    for kind in ("lws", "linear"):
        with pytest.raises(ConfigError, match="keeps its cosine expert heads"):
            model.set_head(kind)
    before = model.head.experts[0].weight.detach().clone()
    model.reset_head()  # cRT's reinit_head reaches every expert
    assert not torch.equal(before, model.head.experts[0].weight)
    with pytest.raises(ConfigError, match="linear or cosine heads"):
        ride_model(head="lws")
    with pytest.raises(ConfigError, match="metadata does not work with the multi-expert model"):
        build_model(ModelConfig(name="ride_resnet32", metadata=["age"]), C, 3, COUNTS, metadata_dim=4)
    for kwargs, key in (({"num_experts": 0}, "num_experts"), ({"expert_widths": [24]}, "expert_widths"), ({"blocks": 0}, "blocks"),
                        ({"scale": 0.0}, "scale")):
        with pytest.raises(ConfigError, match=key):
            ride_model(**kwargs)


def test_linear_expert_heads_are_unscaled():
    """The official use_norm: false: nn.Linear experts, s = 1."""
    model = ride_model(head="linear").eval()
    assert model.head.scale == 1.0
    out = model(torch.randn(2, 3, 32, 32), return_experts=True)
    assert torch.allclose(out.logits, out.experts.mean(1))


def test_grad_cam_explains_the_shared_trunk():
    """Like BBN's: the deepest map every expert's logits depend on is the trunk's last stage."""
    from longtail.evaluation.explain import cam_target_layer

    model = ride_model(blocks=1)
    assert cam_target_layer(model) is model.backbone.trunk.layer1
