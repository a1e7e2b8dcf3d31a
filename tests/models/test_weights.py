"""Pretrained and checkpoint weights: round trips, layout detection, channel adaptation, one-line errors."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision

from longtail.core.errors import ConfigError, LongtailError
from longtail.core.schema import ModelConfig
from longtail.models import adapt_conv_weight, build_model, load_checkpoint_weights
from longtail.models.heads import LWSHead
from longtail.models.resnet import resnet10


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    return text


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_weights_file_round_trip_in_three_layouts(tmp_path):
    torch.manual_seed(0)
    source = build_model(ModelConfig(name="resnet10", small_input=True, drop_block_prob=0.1), 7, 3)
    wanted = {k: v for k, v in source.backbone.state_dict().items()}
    files = {
        "plain.pt": source.backbone.state_dict(),  # the backbone's own keys
        "run.pt": {"arch": "resnet10", "epoch": 3, "model": source.state_dict()},  # longtail checkpoint, 7-class head
        "ddp.pt": {"state_dict": {"module." + k: v for k, v in source.backbone.state_dict().items()}},
    }
    for name, obj in files.items():
        torch.save(obj, tmp_path / name)
        model = build_model(ModelConfig(name="resnet10", small_input=True, drop_block_prob=0.1, weights=str(tmp_path / name)), 3, 3)
        assert _same(model.backbone.state_dict(), wanted), name
        assert model.head.weight.shape == (3, 512)


def test_torchvision_file_loads_into_grey_model_with_summed_first_conv(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18()  # a torchvision ImageNet file: 3-channel conv1, 1000-class fc
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    model = build_model(ModelConfig(name="torchvision", arch="resnet18", weights=str(tmp_path / "resnet18.pth")), 2, 1)
    net = model.backbone.net
    assert torch.allclose(net.conv1.weight, reference.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(net.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    assert torch.equal(net.bn1.running_var, reference.bn1.running_var)


def test_adapt_conv_weight_keeps_the_response_to_grey_images():
    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3)
    grey = torch.rand(1, 1, 5, 5)
    rgb = torch.nn.functional.conv2d(grey.expand(1, 3, 5, 5), w)
    assert torch.allclose(torch.nn.functional.conv2d(grey, adapt_conv_weight(w, 1)), rgb, atol=1e-5)
    tiled = adapt_conv_weight(w, 5)  # more channels: tiled R, G, B, R, G scaled by 3/5
    assert torch.allclose(tiled, torch.cat([w, w[:, :2]], 1) * 0.6)


def test_weights_of_another_architecture_is_a_one_line_error(tmp_path):
    torch.save({"arch": "resnet10", "model": resnet10().state_dict()}, tmp_path / "r10.pt")
    with pytest.raises(LongtailError) as err:
        build_model(ModelConfig(name="resnet32", weights=str(tmp_path / "r10.pt")), 10, 3)
    text = _one_line(err)
    assert "model 'resnet32'" in text and "'resnet10' model" in text and "missing keys" in text
    # a plain torchvision ResNet-18 file into our ResNet-10: extra blocks are named
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    with pytest.raises(LongtailError) as err:
        build_model(ModelConfig(name="resnet10", weights=str(tmp_path / "r18.pth")), 10, 3)
    assert "unexpected keys (layer1.1.conv1.weight" in _one_line(err)


def test_missing_or_unreadable_weights_file(tmp_path):
    with pytest.raises(LongtailError, match="not found") as err:
        build_model(ModelConfig(name="resnet32", weights=str(tmp_path / "nope.pt")), 10, 3)
    _one_line(err)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(LongtailError, match="cannot be read as plain tensors") as err:
        build_model(ModelConfig(name="resnet32", weights=str(tmp_path / "junk.pt")), 10, 3)
    _one_line(err)


def test_pretrained_torchvision_offline_is_a_one_line_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache: the download must run
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(LongtailError) as err:
        build_model(ModelConfig(name="torchvision", arch="resnet18", pretrained=True), 2, 3)
    text = _one_line(err)
    assert "model.weights=/path/to/file" in text and "resnet18" in text and "URLError" in text


def test_pretrained_timm_offline_is_a_one_line_error(monkeypatch):
    timm_builder = pytest.importorskip("timm.models._builder")

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(timm_builder, "load_pretrained", offline)
    with pytest.raises(LongtailError) as err:
        build_model(ModelConfig(name="timm", arch="resnet10t", pretrained=True), 2, 3)
    assert "model.weights=/path/to/file" in _one_line(err)


def test_pretrained_without_hub_weights_or_with_a_file_too(tmp_path):
    with pytest.raises(LongtailError, match="no downloadable pretrained weights") as err:
        build_model(ModelConfig(name="resnet32", pretrained=True), 10, 3)
    _one_line(err)
    with pytest.raises(ConfigError, match="not both"):
        build_model(ModelConfig(name="torchvision", pretrained=True, weights=str(tmp_path / "w.pt")), 10, 3)


def test_checkpoint_round_trip_and_mismatch(tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="resnet32"), 10, 3)
    model.set_head("lws")
    with torch.no_grad():
        model.head.scales.mul_(2.0)
    state = {"arch": model.arch, "model": model.state_dict()}
    fresh = build_model(ModelConfig(name="resnet32"), 10, 3)
    load_checkpoint_weights(fresh, state, "last.pt")  # switches the fresh linear head to LWS
    assert isinstance(fresh.head, LWSHead) and _same(fresh.state_dict(), model.state_dict())
    other = build_model(ModelConfig(name="resnet32"), 5, 3)
    with pytest.raises(LongtailError) as err:
        load_checkpoint_weights(other, state, "last.pt")
    text = _one_line(err)
    assert text.startswith("last.pt: weights do not fit model 'resnet32'")
    assert "3 shape mismatches (head.scales: file [10] vs model [5])" in text


def test_checkpoint_with_numpy_rng_state_is_readable_as_weights(tmp_path):
    import numpy as np

    source = build_model(ModelConfig(name="small_cnn"), 3, 1)
    torch.save({"model": source.state_dict(), "rng": {"numpy": np.random.get_state()}, "epoch": np.int64(4)}, tmp_path / "best.pt")
    model = build_model(ModelConfig(name="small_cnn", weights=str(tmp_path / "best.pt")), 5, 1)
    assert _same(model.backbone.state_dict(), source.backbone.state_dict())


def test_timm_safetensors_file_loads_without_its_classifier(tmp_path):
    timm = pytest.importorskip("timm")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    torch.manual_seed(0)
    reference = timm.create_model("test_resnet")  # with its 1000-class classifier
    safetensors_torch.save_file(reference.state_dict(), str(tmp_path / "model.safetensors"))
    model = build_model(ModelConfig(name="timm", arch="test_resnet", weights=str(tmp_path / "model.safetensors")), 2, 3)
    ours = model.backbone.net.state_dict()
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in ours.items())


def test_file_without_tensors_is_a_one_line_error(tmp_path):
    torch.save({"epoch": 3, "model": {}}, tmp_path / "empty.pt")
    with pytest.raises(LongtailError, match="holds no tensors") as err:
        build_model(ModelConfig(name="small_cnn", weights=str(tmp_path / "empty.pt")), 3, 1)
    _one_line(err)
