"""MBIT options reachable from a config (issue #18): NAdam, RandomCropInRate, per-image mean
normalisation, EVAL_MODE, the Mixup op fed by the engine, BBN on torchvision/timm backbones and the
metric options (``eval.protocol``, ``eval.unk_class``)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import longtail
from longtail.augment import ops as aug_ops
from longtail.augment.randaugment import ModifiedRandAugment, SlotAugment, TrainingImagePool
from longtail.catalog.check import load_config
from longtail.core.errors import ConfigError
from longtail.core.schema import Component, EvalConfig, OptimizerConfig
from longtail.data import build_pipeline
from longtail.data.dataset import TensorImageDataset
from longtail.data.transforms import PerImageMean, RandomCropInRate
from longtail.engine.optim import build_optimizer
from longtail.engine.trainer import set_module_mode
from longtail.evaluation.scoring import split_metrics
from longtail.metrics import compute
from tests.helpers import tiny_config


# ------------------------------------------------------------------------------------- NAdam
def test_nadam_steps_like_torch_nadam_with_the_same_groups():
    """optimizer.name: nadam is torch.optim.NAdam over longtail's groups (L2 decay, none on bias/norm)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    reference = copy.deepcopy(model)
    cfg = OptimizerConfig(name="nadam", lr=0.01, weight_decay=0.1, betas=(0.8, 0.99))
    ours = build_optimizer(model, cfg)
    assert isinstance(ours, torch.optim.NAdam)
    decay = [p for n, p in reference.named_parameters() if n.endswith("weight") and not n.startswith("1.")]
    no_decay = [p for n, p in reference.named_parameters() if not (n.endswith("weight") and not n.startswith("1."))]
    theirs = torch.optim.NAdam([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], lr=0.01, betas=(0.8, 0.99))
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    for _ in range(3):
        for net, opt in ((model, ours), (reference, theirs)):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
    for (name, a), b in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, msg=name)
    assert load_config(raw={"data": {"source": {"name": "digits"}}, "optimizer": {"name": "nadam"}}).optimizer.name == "nadam"


# ---------------------------------------------------------------------------- random crop in rate
def test_random_crop_in_rate_window_is_mbits_central_region():
    # landscape 20 x 30, crop 8 x 10, long side (width) keeps 0.75, short side (height) 0.5:
    # x_l = int(30 * 0.25 / 2) = 3, x_r = 30 - 3 - 10 = 17; y_l = int(20 * 0.5 / 2) = 5, y_r = 20 - 5 - 8 = 7
    op = RandomCropInRate([8, 10], l_region=0.75, s_region=0.5)
    assert op.window(20, 30) == (5, 7, 3, 17)
    # portrait 30 x 20: the long side is now the height: y_l = 3, y_r = 30 - 3 - 8 = 19; x_l = 5, x_r = 20 - 5 - 10 = 5
    assert op.window(30, 20) == (3, 19, 5, 5)
    # MBIT's float arithmetic, kept: int(30 * (1 - 0.8) / 2) is 2, not 3
    assert RandomCropInRate([8, 10], l_region=0.8).window(20, 30)[2] == 2


def test_random_crop_in_rate_crops_every_allowed_position_and_nothing_else():
    torch.manual_seed(0)
    H, W = 12, 16
    grid = torch.arange(H * W, dtype=torch.float32).view(1, 1, H, W).expand(400, 1, H, W).contiguous()
    op = RandomCropInRate(4, l_region=0.5, s_region=0.5)  # rows 3..9 -> top 3..5; cols 4..12 -> left 4..8
    out = op(grid)
    tops = (out[:, 0, 0, 0] // W).long()
    lefts = (out[:, 0, 0, 0] % W).long()
    assert set(tops.tolist()) == {3, 4, 5} and set(lefts.tolist()) == {4, 5, 6, 7, 8}
    for crop, t, l in zip(out[:20], tops[:20], lefts[:20]):
        torch.testing.assert_close(crop[0], grid[0, 0, t : t + 4, l : l + 4])


def test_random_crop_in_rate_refuses_a_region_smaller_than_the_crop():
    with pytest.raises(ConfigError, match="does not fit the central"):
        RandomCropInRate(8, l_region=0.5, s_region=0.5)(torch.zeros(1, 3, 12, 12))
    with pytest.raises(ConfigError, match="l_region must be in"):
        RandomCropInRate(8, l_region=1.5)


# ------------------------------------------------------------------------------ per-image mean
def test_per_image_mean_subtracts_each_images_channel_means():
    x = torch.tensor(np.random.default_rng(0).integers(0, 256, (2, 3, 5, 4)), dtype=torch.uint8)
    pipeline = build_pipeline([Component(name="per_image_mean")], [0.0] * 3, [1.0] * 3, train=False)
    out = pipeline.batch(x)
    expected = x.double().numpy() / 255.0
    expected -= expected.mean(axis=(2, 3), keepdims=True)
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-6)
    assert PerImageMean.random is False


# ------------------------------------------------------------------------------ EVAL_MODE
def test_module_modes():
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2), nn.Dropout(0.5))
    set_module_mode(net, "eval")
    assert not any(m.training for m in net.modules())
    set_module_mode(net, "eval_batchnorm")
    assert [m.training for m in net] == [True, False, True]
    set_module_mode(net, "train")
    assert all(m.training for m in net.modules())


def test_eval_module_mode_trains_weights_but_keeps_batchnorm_statistics(tmp_path):
    """train.module_mode: eval (MBIT EVAL_MODE): BN running statistics stay at their initial values."""
    cfg = tiny_config(tmp_path, name="evalmode", train={"epochs": 1, "progress": False, "tensorboard": False, "module_mode": "eval"})
    result = longtail.train(cfg)
    state = torch.load(result.run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)["model"]
    means = [v for k, v in state.items() if k.endswith("running_mean")]
    variances = [v for k, v in state.items() if k.endswith("running_var")]
    assert means and all(torch.equal(m, torch.zeros_like(m)) for m in means)
    assert all(torch.equal(v, torch.ones_like(v)) for v in variances)
    torch.manual_seed(0)  # the same run in the default mode moves them
    plain = longtail.train(tiny_config(tmp_path, name="trainmode", train={"epochs": 1, "progress": False, "tensorboard": False}))
    state = torch.load(plain.run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)["model"]
    assert any(not torch.equal(v, torch.zeros_like(v)) for k, v in state.items() if k.endswith("running_mean"))


# ------------------------------------------------------------------------------ mixup image pool
def test_pipeline_gives_the_training_pool_to_the_mixup_op_only():
    images = torch.tensor(np.random.default_rng(1).integers(0, 256, (5, 3, 6, 6)), dtype=torch.uint8)
    data = TensorImageDataset(images, targets=[0, 1, 0, 1, 0], class_names=["a", "b"])
    pipeline = build_pipeline([Component(name="modified_randaugment"), Component(name="randaugment")],
                              [0.5] * 3, [0.5] * 3, train=True)
    assert pipeline.attach_image_pool(TrainingImagePool(data)) == 1
    mra, ra = pipeline.ops[0], pipeline.ops[1]
    assert isinstance(mra.image_pool, TrainingImagePool) and ra.image_pool is None
    assert not ModifiedRandAugment(mixup=False).wants_image_pool
    torch.manual_seed(3)
    drawn = [mra.image_pool() for _ in range(30)]
    assert all(any(torch.equal(d, img) for img in images) for d in drawn)


def test_mixup_op_blends_with_the_pool_image():
    """A slot holding only mixup, applied with probability 1: out = img + f * (other - img), f ~ U(0, 0.2)."""
    img = torch.full((3, 4, 4), 100, dtype=torch.uint8)
    other = torch.full((3, 4, 4), 200, dtype=torch.uint8)
    op = SlotAugment([("mixup",)], prob=1.0, magnitude=10, image_pool=lambda: other)
    torch.manual_seed(0)
    out = op(img)
    f = (out.float() - 100.0) / 100.0
    assert torch.all(out == out.flatten()[0]) and 0.0 <= float(f.flatten()[0]) <= 0.2
    assert op.plan() == ["mixup"]
    assert SlotAugment([("mixup",)], prob=1.0, magnitude=10).plan() == []  # no pool: mixup never runs


def test_engine_feeds_mixup_training_images(tmp_path, monkeypatch):
    """From a config, modified RandAugment's mixup runs with images of the training split."""
    seen = []
    real = aug_ops.OPS["mixup"]

    def spy(img, magnitude, generator=None, other=None):
        seen.append(other)
        return real(img, magnitude, generator, other=other)

    monkeypatch.setitem(aug_ops.OPS, "mixup", spy)
    cfg = tiny_config(tmp_path, name="mixup", train={"epochs": 1, "progress": False, "tensorboard": False})
    cfg["data"] = {**cfg["data"], "channels": 3, "image_size": 16,
                   "train_transforms": [{"name": "modified_randaugment", "policy": "v0_0", "prob": 1.0, "magnitude": 10}]}
    longtail.train(cfg)
    assert len(seen) > 0
    assert all(o.dtype == torch.uint8 and tuple(o.shape) == (3, 16, 16) for o in seen)


# ------------------------------------------------------------------------------ BBN backbones
@pytest.mark.parametrize("name,arch", [("bbn_torchvision", "resnet18"), ("bbn_timm", "regnetx_002")])
def test_bbn_on_registry_backbones_branches_reproduce_the_plain_network(name, arch):
    """Trunk + conventional branch with the plain network's weights is that network; forward_mixed is
    the head on concat(2 a f_conv(x_a), 2 (1 - a) f_rebal(x_b))."""
    from longtail.core.schema import ModelConfig
    from longtail.models.bbn import BBNClassifier
    from longtail.models.build import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name, arch=arch), num_classes=4, in_channels=3).eval()
    assert isinstance(model, BBNClassifier)
    bb = model.backbone
    plain = build_model(ModelConfig(name=name.removeprefix("bbn_"), arch=arch), num_classes=4, in_channels=3).backbone.eval()
    assert bb.feature_dim == 2 * plain.feature_dim
    # the plain network's weights into the trunk (all but the last stage) and the conventional branch
    prefix = {("bbn_torchvision", "resnet18"): "net.layer4.", ("bbn_timm", "regnetx_002"): "net.s4."}[(name, arch)]
    state = plain.state_dict()
    loaded = bb.trunk.load_state_dict({k: v for k, v in state.items() if not k.startswith(prefix)}, strict=False)
    assert not loaded.missing_keys and not loaded.unexpected_keys
    bb.conventional.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    x_a, x_b = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(bb.branch_features(x_a, "conventional"), plain(x_a))
        mixed = model.forward_mixed(x_a, x_b, 0.3)
        f = torch.cat([0.6 * bb.branch_features(x_a, "conventional"), 1.4 * bb.branch_features(x_b, "rebalancing")], 1)
        torch.testing.assert_close(mixed, model.head(f))
        assert model(x_a).shape == (2, 4)
    assert all(p is not q for p, q in zip(bb.conventional.parameters(), bb.rebalancing.parameters()))


def test_bbn_refuses_a_backbone_without_stages():
    from longtail.models.bbn import bbn_timm, bbn_torchvision

    with pytest.raises(ConfigError, match="ResNet or RegNet"):
        bbn_torchvision(arch="mobilenet_v3_small")
    with pytest.raises(ConfigError, match="ResNet or RegNet"):
        bbn_timm(arch="mobilenetv3_small_050")


# ------------------------------------------------------------------------------ metric options
def test_eval_protocol_isic2017_adds_the_mel_sk_table():
    logits = np.log(np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.3, 0.3, 0.4]]))
    y = np.array([0, 1, 2, 2, 1])
    plain = split_metrics(logits, y, [5, 5, 5], ["MEL", "SK", "NV"], EvalConfig())
    isic = split_metrics(logits, y, [5, 5, 5], ["MEL", "SK", "NV"], EvalConfig(protocol="isic2017"))
    assert "isic2017" not in plain
    # predictions 0, 1, 2, 0, 2: MEL one-vs-rest accuracy 4/5 (row 4 is a false MEL), SK 4/5 (row 5 missed)
    assert isic["isic2017"]["accuracy_mel"] == pytest.approx(0.8) and isic["isic2017"]["accuracy_sk"] == pytest.approx(0.8)
    assert isic["isic2017"]["balanced_accuracy"] == pytest.approx((1.0 + 0.5) / 2)
    assert isic["isic2017"] == compute(logits, y, isic2017=True)["isic2017"]
    with pytest.raises(Exception, match="protocol"):
        load_config(raw={"data": {"source": {"name": "digits"}}, "eval": {"protocol": "isic2016"}})


def test_unk_class_sigmoid_scores_sigmoids_plus_unk():
    """MBIT VALID_ADD_ONE_CLASS: columns sigmoid(z) and 1 - max sigmoid; a row no class claims is UNK."""
    z = np.array([[2.0, -1.0], [-3.0, -2.0], [-1.0, 1.0]])
    y = np.array([0, 1, 1])
    res = split_metrics(z, y, [4, 4], ["a", "b"], EvalConfig(unk_class="sigmoid"))
    s = 1 / (1 + np.exp(-z))
    scores = np.c_[s, 1 - s.max(1)]
    assert scores.argmax(1).tolist() == [0, 2, 1]
    assert [p["name"] for p in res["per_class"]] == ["a", "b", "UNK"]
    assert res["confusion_matrix"] == [[1, 0, 0], [0, 1, 1], [0, 0, 0]]
    assert res["balanced_accuracy"] == pytest.approx((1.0 + 0.5) / 2)  # UNK is never a true class
    assert res["per_class"][2]["train_count"] == 0
    with pytest.raises(ConfigError, match="unk_class"):
        load_config(raw={"data": {"source": {"name": "digits"}}, "eval": {"unk_class": "sigmoid"}, "posthoc": {"logit_adjust": True}})


def test_tta_sigmoid_activation_averages_sigmoids():
    from longtail.augment.tta import TTA

    tta = TTA(crops=9, crop_size=4)
    tta.activation = "sigmoid"
    x = torch.randn(2, 3, 6, 6)
    w = torch.randn(3, 2)
    fn = lambda v: v.mean((2, 3)) @ w  # noqa: E731
    out = tta.predict(fn, x)
    expected = torch.stack([torch.sigmoid(fn(v)) for v in tta.views(x)]).mean(0)
    torch.testing.assert_close(torch.sigmoid(out), expected)


def test_a_run_with_unk_class_sigmoid_validates_and_tests_on_c_plus_one_columns(tmp_path):
    """eval.unk_class: sigmoid from a config: results carry the UNK column, scored from the (TTA-averaged) sigmoids."""
    cfg = tiny_config(tmp_path, name="unk", train={"epochs": 1, "progress": False, "tensorboard": False},
                      eval={"unk_class": "sigmoid", "tta": {"name": "tta", "crops": 9, "crop_size": 6}})
    result = longtail.train(cfg)
    res = result.results
    names = res["class_names"]
    for split in ("val", "test"):
        assert [p["name"] for p in res[split]["per_class"]] == [*names, "UNK"]
        assert res[split]["per_class"][-1]["support"] == 0
    test = np.load(result.run_dir / "predictions" / "test.npz")
    expected = split_metrics(test["logits"], test["targets"], res["train_counts"], names, EvalConfig(unk_class="sigmoid"))
    assert res["test"]["confusion_matrix"] == expected["confusion_matrix"]
    assert res["test"]["balanced_accuracy"] == pytest.approx(expected["balanced_accuracy"])
    assert "| UNK |" in (result.run_dir / "report.md").read_text().replace("  ", " ")
