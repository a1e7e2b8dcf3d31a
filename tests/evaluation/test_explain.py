"""Grad-CAM: the target layer per backbone family, the maps (shape, range, and where they point), the
refusals (clips, a head without gradients, unknown family, bad layer name), overlays and PNGs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from longtail.core.errors import ConfigError, DataError, LongtailError
from longtail.core.schema import ModelConfig
from longtail.evaluation import explain as E
from longtail.models import build_model

#: the tests that make maps need grad-cam (the explain extra); the layer choice and the refusals do not
needs_gradcam = pytest.mark.skipif(importlib.util.find_spec("pytorch_grad_cam") is None, reason="grad-cam is not installed (longtail[explain])")


def build(name: str, channels: int = 3, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(name=name, **kwargs), num_classes=3, in_channels=channels).eval()


# (model name, kwargs, the module expected as the target, input H, W)
FAMILIES = [
    ("small_cnn", {"widths": [4, 8]}, lambda m: m.backbone.layers[-1], (12, 16)),
    ("resnet32", {}, lambda m: m.backbone.layer3, (12, 16)),
    ("torchvision", {"arch": "resnet18"}, lambda m: m.backbone.net.layer4, (32, 40)),
    ("bbn_resnet32", {}, lambda m: m.backbone.trunk.layer2, (12, 16)),
    ("timm", {"arch": "tf_efficientnet_lite0"}, lambda m: m.backbone.net.bn2, (32, 40)),  # EfficientNet-Lite's timm form
]


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    return {f"{name}{kwargs.get('arch', '')}": build(name, **kwargs) for name, kwargs, _, _ in FAMILIES}


@needs_gradcam
@pytest.mark.parametrize("name, kwargs, expected, size", FAMILIES, ids=[f"{n}{k.get('arch', '')}" for n, k, _, _ in FAMILIES])
def test_each_family_gets_its_last_conv_block_and_finite_maps_of_the_image_size(models, name, kwargs, expected, size):
    model = models[f"{name}{kwargs.get('arch', '')}"]
    layer = E.cam_target_layer(model)
    assert layer is expected(model)
    images = torch.randn(2, 3, *size)
    maps = E.grad_cams(model, images, [0, 2], layer)
    assert maps.shape == (2, *size) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0


def test_more_torchvision_and_timm_families_without_running_them():
    mobilenet = build("torchvision", arch="mobilenet_v3_small")
    assert E.cam_target_layer(mobilenet) is mobilenet.backbone.net.features
    timm_resnet = build("timm", arch="resnet18")
    assert E.cam_target_layer(timm_resnet) is timm_resnet.backbone.net.layer4  # the last entry of timm's feature_info
    regnet = build("torchvision", arch="regnet_y_400mf")
    assert E.cam_target_layer(regnet) is list(regnet.backbone.net.trunk_output.children())[-1]


class QuadrantNet(nn.Module):
    """Class 1 sees only the top-left quadrant, class 0 only the rest; returns (logits, features) like a
    Classifier asked for features. The image is split into two fixed channels before a 1x1 conv (the target)."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(2)  # an 8 x 12 map, so the CAM is upsampled to 16 x 24
        self.conv = nn.Conv2d(2, 2, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(2)[:, :, None, None])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = x.shape[-2:]
        top_left = torch.zeros(1, 1, h, w)
        top_left[..., : h // 2, : w // 2] = 1.0
        split = torch.cat([x * (1 - top_left), x * top_left], dim=1)
        maps = torch.relu(self.conv(self.pool(split)))
        features = maps.mean(dim=(2, 3))
        return features, features  # logit c = mean of channel c


@needs_gradcam
def test_the_map_of_a_class_lies_where_its_evidence_is():
    model = QuadrantNet()
    images = torch.rand(3, 1, 16, 24) + 0.1
    maps = E.grad_cams(model, images, [1, 0, 1], model.conv)
    assert maps.shape == (3, 16, 24)
    for m, c in zip(maps, [1, 0, 1]):
        inside = m[:8, :12].sum() / m.sum()  # the top-left quadrant's share of the map's mass
        if c == 1:  # nothing away from the quadrant; bilinear upsampling spills over its edge by a pixel or two
            assert inside > 0.9 and m[10:].max() == 0 and m[:, 14:].max() == 0
        else:
            assert inside < 0.1 and m[:6, :10].max() == 0


@needs_gradcam
def test_chunks_give_the_maps_of_one_batch():
    model = build("resnet32")
    images = torch.randn(5, 3, 8, 8)
    layer = E.cam_target_layer(model)
    whole = E.grad_cams(model, images, [0, 1, 2, 1, 0], layer)
    np.testing.assert_allclose(E.grad_cams(model, images, [0, 1, 2, 1, 0], layer, batch_size=2), whole, atol=1e-5)
    np.testing.assert_allclose(E.grad_cams(model, images[3:4], [1], layer), whole[3:4], atol=1e-5)  # each image on its own


@needs_gradcam
def test_frozen_model_gets_maps_and_is_left_as_it_was():
    model = build("small_cnn", widths=[4, 8]).train()
    model.freeze_backbone()  # no parameter of the backbone requires a gradient
    model.head.weight.grad = torch.ones_like(model.head.weight)
    modes = {n: m.training for n, m in model.named_modules()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    maps = E.grad_cams(model, torch.randn(2, 3, 8, 8), [1, 1], E.cam_target_layer(model))
    assert maps.shape == (2, 8, 8) and maps.max() > 0  # the gradient reached the map
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert torch.equal(model.head.weight.grad, torch.ones_like(model.head.weight))
    assert all(p.grad is None for p in model.backbone.parameters())


def test_override_is_a_dotted_name_and_a_wrong_one_lists_conv_modules():
    model = build("resnet32")
    assert E.cam_target_layer(model, "backbone.layer2") is model.backbone.layer2
    with pytest.raises(ConfigError) as e:
        E.cam_target_layer(model, "backbone.layer9")
    msg = str(e.value)
    assert msg.startswith("eval.cam_layer: model 'resnet32' has no module 'backbone.layer9'") and "\n" not in msg
    assert "backbone.layer3.4.conv2" in msg  # a valid conv module is offered


def test_unknown_family_is_a_one_line_error_naming_eval_cam_layer():
    with pytest.raises(ConfigError) as e:
        E.cam_target_layer(QuadrantNet())
    assert str(e.value) == ("no Grad-CAM target layer is known for model 'QuadrantNet'; "
                            "set eval.cam_layer to the dotted name of a conv module (e.g. conv)")
    vit = build("timm", arch="vit_tiny_patch16_224", img_size=32, depth=1)  # tokens, not a 2-D map
    with pytest.raises(ConfigError, match=r"^no Grad-CAM target layer is known for model 'timm:vit_tiny_patch16_224'; set eval\.cam_layer"):
        E.cam_target_layer(vit)


def test_clip_models_are_refused_in_one_line():
    video = build("resnext3d", layers=[1, 1, 1, 1], planes=[32, 32, 32, 32], stem_width=8)
    for call in (lambda: E.cam_target_layer(video), lambda: E.grad_cams(video, torch.randn(1, 3, 8, 8), [0], video.backbone.layer4)):
        with pytest.raises(ConfigError) as e:
            call()
        assert str(e.value) == "Grad-CAM maps are 2-D but model 'resnext3d' takes clips (C x T x H x W); leave out --explain for video runs"
    with pytest.raises(ConfigError, match="these are clips"):
        E.grad_cams(build("small_cnn", widths=[4, 8]), torch.randn(1, 3, 2, 8, 8), [0], nn.Identity())


def spbl_model() -> nn.Module:
    """A small CNN with SPBL's head: a fitted scikit-learn classifier behind FeatureClassifierHead (as attach_classifier does)."""
    from sklearn.linear_model import LogisticRegression

    from longtail.spbl.classifier import FeatureClassifierHead

    model = build("small_cnn", widths=[4, 8])
    rng = np.random.default_rng(0)
    clf = LogisticRegression(max_iter=200).fit(rng.normal(size=(30, model.feature_dim)), np.arange(30) % 3)
    model.head = FeatureClassifierHead(clf, model.num_classes)
    model.dropout = nn.Identity()
    return model


def test_a_head_without_gradients_is_refused_before_any_work(monkeypatch):
    model = spbl_model()
    calls = []
    monkeypatch.setattr(model.backbone, "forward", lambda x: calls.append(x))  # the backbone must never run
    expected = ("model 'small_cnn' has no gradient path from its logits to the image (its head, FeatureClassifierHead, is not "
                "differentiable, e.g. SPBL's feature SVM), so Grad-CAM cannot explain it; leave out --explain for this run")
    with pytest.raises(ConfigError) as e:
        E.cam_target_layer(model)
    assert str(e.value) == expected
    with pytest.raises(ConfigError) as e:
        E.grad_cams(model, torch.randn(1, 3, 8, 8), [0], model.backbone.layers[-1])
    assert str(e.value) == expected and not calls


@needs_gradcam
def test_a_forward_without_gradients_is_refused_too():
    class Detached(QuadrantNet):
        def forward(self, x):
            return super().forward(x)[0].detach()

    model = Detached()
    with pytest.raises(ConfigError, match=r"^model 'Detached' has no gradient path .* leave out --explain for this run"):
        E.grad_cams(model, torch.rand(1, 1, 8, 8), [0], model.conv)


@needs_gradcam
def test_bad_layers_images_and_classes_are_one_line_errors():
    model = build("small_cnn", widths=[4, 8])
    x = torch.randn(2, 3, 8, 8)
    layer = E.cam_target_layer(model)
    cases = [
        (lambda: E.grad_cams(model, x, [0, 1], model.head), ConfigError, "eval.cam_layer: layer 'head' gives (2, 3), not an N x C x H x W map"),
        (lambda: E.grad_cams(model, x, [0, 1], nn.Conv2d(3, 3, 1)), ConfigError, "is not a module of model 'small_cnn'"),
        (lambda: E.grad_cams(model, x, [0], layer), DataError, "1 classes for 2 images"),
        (lambda: E.grad_cams(model, x, [0, 3], layer), DataError, "class 3 is outside 0..2"),
        (lambda: E.grad_cams(model, (x * 255).to(torch.uint8), [0, 1], layer), DataError, "normalised float images"),
        (lambda: E.grad_cams(model, x[0], [0], layer), DataError, "N x C x H x W"),
    ]
    for call, error, text in cases:
        with pytest.raises(error) as e:
            call()
        assert text in str(e.value) and "\n" not in str(e.value), text


@needs_gradcam
def test_a_layer_off_the_forward_path_is_named():
    model = build("small_cnn", widths=[4, 8])
    model.backbone.spare = nn.Conv2d(8, 8, 1)  # registered, never called
    with pytest.raises(ConfigError, match="layer 'backbone.spare' is not on the way from the image to the logits"):
        E.grad_cams(model, torch.randn(1, 3, 8, 8), [0], model.backbone.spare)


@needs_gradcam
def test_a_layer_no_gradient_reaches_is_named():
    class Side(QuadrantNet):
        def __init__(self) -> None:
            super().__init__()
            self.probe = nn.Conv2d(1, 1, 1)  # runs on every image, but the logits never use its output

        def forward(self, x):
            self.probe(x)
            return super().forward(x)

    model = Side()
    with pytest.raises(ConfigError, match="^eval.cam_layer: no gradient of the logits reaches layer 'probe'; set it to a conv module before the head$"):
        E.grad_cams(model, torch.rand(1, 1, 8, 8), [0], model.probe)


def test_missing_grad_cam_package_names_the_extra(monkeypatch):
    model = build("small_cnn", widths=[4, 8])
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam", None)  # import fails as if not installed
    with pytest.raises(LongtailError) as e:
        E.grad_cams(model, torch.randn(1, 3, 8, 8), [0], E.cam_target_layer(model))
    assert str(e.value) == "Grad-CAM needs the grad-cam package; install it with pip install 'longtail[explain]'"


@pytest.mark.parametrize("module", ["explain", "subgroups", "lesions"])
def test_optional_packages_are_imported_inside_functions_only(module):
    import ast
    import importlib

    path = importlib.import_module(f"longtail.evaluation.{module}").__file__
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name.split(".")[0] for n in top if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in top if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
    assert not names & {"pytorch_grad_cam", "fairlearn", "netcal", "mapie", "timm", "cv2", "matplotlib", "PIL", "pandas"}


# ------------------------------------------------------------------------------- overlays
def test_overlay_blends_jet_at_0_4_by_hand():
    grey = np.full((1, 2, 3), 100, dtype=np.uint8)
    cam = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 1.0]])
    out = E.overlay(grey, cam)
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    # jet(0) = (0, 0, 0.5) and jet(1) = (0.5, 0, 0): 0.6 * 100 + 0.4 * 255 * channel
    cold, hot = [60, 60, 111], [111, 60, 60]
    assert out[0, 0].tolist() == cold and out[0, 2].tolist() == hot and out[1, 0].tolist() == hot
    rgb = torch.tensor([[[200]], [[10]], [[0]]], dtype=torch.uint8)  # a torch C x H x W image
    assert E.overlay(rgb, np.zeros((1, 1)), alpha=0.0).tolist() == [[[200, 10, 0]]]


def test_overlay_viridis_follows_matplotlib_and_bad_inputs_are_errors():
    import matplotlib

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (3, 4, 5), dtype=np.uint8)
    cam = rng.random((4, 5))
    ref = np.rint(0.6 * image.transpose(1, 2, 0) + 0.4 * 255 * matplotlib.colormaps["viridis"](cam)[..., :3])
    assert np.array_equal(E.overlay(image, cam, colormap="viridis"), ref.astype(np.uint8))
    for call, error, text in [
        (lambda: E.overlay(image, cam, colormap="virdis"), ConfigError, "did you mean 'viridis'"),
        (lambda: E.overlay(image, cam, alpha=1.5), ConfigError, "alpha=1.5"),
        (lambda: E.overlay(image, cam[:3]), DataError, "the map is (3, 5) but the image is (4, 5)"),
        (lambda: E.overlay(image.astype(np.float32), cam), DataError, "uint8 image C x H x W"),
        (lambda: E.overlay(image[:2], cam), DataError, "1 or 3 channels"),
    ]:
        with pytest.raises(error, match=None) as e:
            call()
        assert text in str(e.value) and "\n" not in str(e.value)


def test_save_overlay_writes_a_png_atomically(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    picture = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    path = E.save_overlay(tmp_path / "cams" / "img1.png", picture)
    assert path == tmp_path / "cams" / "img1.png"
    with Image.open(path) as im:
        assert im.format == "PNG" and np.array_equal(np.asarray(im), picture)
    assert sorted(p.name for p in path.parent.iterdir()) == ["img1.png"]  # no temp file left behind
    with pytest.raises(DataError, match="H x W x 3 uint8"):
        E.save_overlay(tmp_path / "bad.png", picture[..., 0])
