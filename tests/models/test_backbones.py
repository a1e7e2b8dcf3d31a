"""Backbones, DropBlock and BBN: shapes, gradients, exact architecture facts, schedules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from longtail.core.errors import ConfigError
from longtail.core.registry import MODELS
from longtail.core.schema import ModelConfig
from longtail.models import BBNClassifier, DropBlock2d, ResNet, bbn_alpha, build_model, count_parameters
from longtail.models.resnet import PadShortcut, resnet10, resnet32
from longtail.models.torchvision_backbone import torchvision_backbone

# models whose defaults are not tiny get small settings; 32 px where the model needs it
SETTINGS: dict[str, tuple[dict, int]] = {
    "torchvision": ({"arch": "resnet18"}, 32),
    "timm": ({"arch": "test_resnet"}, 32),
    "resnet10": ({"small_input": True}, 16),
    "bbn_resnet10": ({"small_input": True}, 16),
    "resnext3d": ({"layers": [1, 1, 1, 1], "cardinality": 4, "stem_width": 8, "planes": [32, 32, 64, 64]}, 16),
}


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_trains_one_step(name, channels):
    if name == "timm":
        pytest.importorskip("timm", reason="timm is not installed")
    torch.manual_seed(0)
    kwargs, size = SETTINGS.get(name, ({}, 16))
    model = build_model(ModelConfig(name=name, **kwargs), num_classes=4, in_channels=channels)
    model.train()
    clips = getattr(model.backbone, "takes_clips", False)  # 3D backbones take N x C x T x H x W
    x = torch.randn(2, channels, *((4,) if clips else ()), size, size, requires_grad=True)
    logits, features = model(x, return_features=True)
    assert logits.shape == (2, 4)
    assert features.shape == (2, model.feature_dim)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 3])).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert x.grad is not None and x.grad.abs().sum() > 0  # the gradient reaches the image


def test_resnet32_has_the_ldam_drw_parameter_count():
    """Hand count for 10 classes (3x3 convs without bias, BN = 2 x width, option-A shortcuts free):

    stem      conv 3*16*9 = 432, BN 32                                            ->     464
    stage 1   5 x (2 x 16*16*9 + 2 x 32)                      = 5 x 4672          ->  23 360
    stage 2   (16*32*9 + 32*32*9 + 128) + 4 x (2*32*32*9 + 128) = 13 952 + 74 240 ->  88 192
    stage 3   (32*64*9 + 64*64*9 + 256) + 4 x (2*64*64*9 + 256) = 55 552 + 295 936 -> 351 488
    head      64*10 + 10                                                          ->     650
    total                                                                             464 154
    """
    model = build_model(ModelConfig(name="resnet32"), num_classes=10, in_channels=3)
    assert count_parameters(model) == 464_154
    assert count_parameters(model.backbone) == 464_154 - 650
    assert model.feature_dim == 64
    assert [len(s) for s in model.backbone.stages()] == [5, 5, 5]
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.backbone.modules())


def test_option_a_shortcut_is_strided_identity_with_zero_channels():
    x = torch.randn(2, 16, 8, 8)
    out = PadShortcut(16, 32, stride=2)(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert out[:, :8].abs().sum() == 0 and out[:, 24:].abs().sum() == 0


def test_resnet10_uses_torchvision_names_and_shapes():
    """So classifier-balancing / torchvision ResNet weight files map key for key."""
    ours = {k: v.shape for k, v in resnet10().state_dict().items()}
    theirs = {k: v.shape for k, v in torchvision.models.resnet18().state_dict().items()}
    assert ours.keys() <= theirs.keys()
    assert all(ours[k] == theirs[k] for k in ours)
    assert resnet10().feature_dim == 512
    assert resnet10(small_input=True).conv1.kernel_size == (3, 3)
    assert resnet10(small_input=True).eval()(torch.randn(1, 3, 8, 8)).shape == (1, 512)


def test_drop_blocks_sit_after_the_last_two_stages():
    torch.manual_seed(0)
    net = resnet32(drop_block_prob=0.5, drop_block_size=3)
    assert len(net.drop_blocks) == 2
    seen: list[str] = []
    for name in ("layer2", "layer3"):
        getattr(net, name).register_forward_hook(lambda m, i, o, name=name: seen.append(name))
    for i, block in enumerate(net.drop_blocks):
        block.register_forward_hook(lambda m, inp, out, i=i: seen.append(f"drop{i}"))
    net.train()(torch.randn(2, 3, 16, 16))
    assert seen == ["layer2", "drop0", "layer3", "drop1"]


@pytest.mark.parametrize("arch", ["resnet18", "regnet_y_400mf"])
def test_torchvision_stagewise_forward_matches_torchvision(arch):
    """With DropBlock inactive (eval), running stage by stage gives the wrapped model's own features."""
    torch.manual_seed(0)
    net = torchvision_backbone(arch=arch, drop_block_prob=0.1).eval()
    x = torch.randn(2, 3, 32, 32)
    assert len(net.drop_blocks) == 2
    with torch.no_grad():
        assert torch.allclose(net(x), net.net(x), atol=1e-6)
    assert net(x).shape == (2, net.feature_dim)


def test_torchvision_adapts_first_conv_and_rejects_unsupported_dropblock():
    net = torchvision_backbone(in_channels=1, arch="resnet18")
    assert net.net.conv1.in_channels == 1 and isinstance(net.net.fc, nn.Identity)
    with pytest.raises(ConfigError, match="did you mean 'resnet18'"):
        torchvision_backbone(arch="resnet181")
    with pytest.raises(ConfigError, match="DropBlock needs a ResNet or RegNet"):
        torchvision_backbone(arch="mobilenet_v3_small", drop_block_prob=0.1)
    with pytest.raises(ConfigError, match="no linear classifier"):
        torchvision_backbone(arch="squeezenet1_0")


# ------------------------------------------------------------------------------ DropBlock
def test_dropblock_is_identity_in_eval_and_keeps_its_step():
    block = DropBlock2d(0.5, 3, steps=10).eval()
    x = torch.randn(2, 4, 8, 8)
    assert torch.equal(block(x), x)
    assert int(block.step) == 0


def _expected_drop_fraction(h: int, w: int, gamma: float, size: int) -> float:
    """Mean over positions of 1 - (1 - gamma)^(number of in-image seeds whose block covers it)."""
    r = size // 2
    rows = np.array([min(i + r, h - 1) - max(i - r, 0) + 1 for i in range(h)])
    cols = np.array([min(j + r, w - 1) - max(j - r, 0) + 1 for j in range(w)])
    return float(np.mean(1 - (1 - gamma) ** np.outer(rows, cols)))


def test_dropblock_drops_the_expected_fraction_shared_across_channels():
    torch.manual_seed(0)
    prob, size, n, h = 0.3, 5, 64, 20
    block = DropBlock2d(prob, size).train()
    out = block(torch.ones(n, 2, h, h))
    dropped = out[:, 0] == 0
    expected = _expected_drop_fraction(h, h, prob / size**2, size)  # ~0.22 with border effects
    # ~25-pixel blocks make positions correlated: about n*h*h/25 = 1000 independent draws, sd ~0.013
    assert abs(dropped.float().mean().item() - expected) < 0.04
    assert torch.equal(out[:, 0], out[:, 1])  # one mask for all channels
    kept = (~dropped).sum().item()
    assert torch.allclose(out[:, 0][~dropped], torch.tensor(n * h * h / kept))  # rescaled to keep the mean


def test_dropblock_schedule_advances_on_training_forwards_only():
    block = DropBlock2d(0.2, 3, steps=5)
    x = torch.randn(1, 1, 6, 6)
    probs = []
    for _ in range(6):
        probs.append(block.drop_prob)
        block.train()(x)
        block.eval()(x)  # validation forwards must not move the ramp (MBIT's bug)
    assert probs == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2, 0.2])
    assert int(block.step) == 6 and "step" in block.state_dict()


def test_dropblock_even_block_size_keeps_shape():
    out = DropBlock2d(0.5, 4).train()(torch.ones(2, 3, 7, 9))
    assert out.shape == (2, 3, 7, 9)


def test_dropblock_rejects_bad_probability():
    with pytest.raises(ConfigError, match="drop_block_prob"):
        DropBlock2d(1.5)


# ------------------------------------------------------------------------------------- BBN
def _bbn(**kw) -> BBNClassifier:
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="bbn_resnet32", **kw), num_classes=5, in_channels=3)
    assert isinstance(model, BBNClassifier)
    return model


def test_bbn_structure_and_inference_shapes():
    model = _bbn()
    bb = model.backbone
    assert isinstance(bb.trunk, ResNet) and bb.trunk.stage_names == ["layer1", "layer2"]
    assert model.feature_dim == 128 and model.head.weight.shape == (5, 128)
    # two independently initialised copies of the 64-wide last stage
    c, r = bb.conventional[0].conv1.weight, bb.rebalancing[0].conv1.weight
    assert c.shape == r.shape == (64, 32, 3, 3) and not torch.equal(c, r)
    logits, features = model.eval()(torch.randn(3, 3, 16, 16), return_features=True)
    assert logits.shape == (3, 5) and features.shape == (3, 128)


def test_bbn_mixing_follows_the_formula():
    model = _bbn().eval()
    x_a, x_b, x_other = torch.randn(3, 2, 3, 16, 16).unbind(0)
    with torch.no_grad():
        # alpha = 1: concat(2 f_a, 0), whatever x_b is
        assert torch.allclose(model.forward_mixed(x_a, x_b, 1.0), model.forward_mixed(x_a, x_other, 1.0))
        f_c = model.backbone.branch_features(x_a, "conventional")
        zeros = torch.zeros_like(f_c)
        assert torch.allclose(model.forward_mixed(x_a, x_b, 1.0), model.head(torch.cat([2 * f_c, zeros], 1)), atol=1e-6)
        # alpha = 0.5 on the same image is plain inference: concat(f_c, f_r)
        assert torch.allclose(model.forward_mixed(x_a, x_a, 0.5), model(x_a), atol=1e-6)
    x_b.requires_grad_(True)
    model.train().forward_mixed(x_a, x_b, 1.0).sum().backward()
    assert x_b.grad is None or x_b.grad.abs().sum() == 0


def test_bbn_alpha_schedule_and_hook():
    # MBIT: 1 - ((e - 1) / E)^2 with 1-based epochs e
    assert bbn_alpha(1, 10) == 1.0 and bbn_alpha(6, 10) == pytest.approx(0.75) and bbn_alpha(10, 10) == pytest.approx(0.19)
    model = _bbn()
    model.on_epoch_start(6, 10)
    assert model.alpha == pytest.approx(0.75)


def test_bbn_dropblock_ramps_trunk_twice_as_long():
    model = _bbn(drop_block_prob=0.1, drop_block_steps=100)
    bb = model.backbone
    assert bb.trunk.drop_blocks[0].steps == 200 and bb.conventional_drop.steps == 100
    model.train().forward_mixed(torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16), 0.5)
    assert int(bb.trunk.drop_blocks[0].step) == 2 and int(bb.conventional_drop.step) == 1
