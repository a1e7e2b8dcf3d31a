"""build_data end to end: splits never touch test, reuse of split indices, the tensor cache,
lazy vs cached pixels, normalisation, bad images, describe and the CLI."""

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from longtail.cli.data import add_commands
from longtail.core.errors import ConfigError, DataError
from longtail.core.schema import DataConfig
from longtail.data import build_data, decode_image_file, describe, plot_class_histogram
from longtail.data import cache as cache_mod


def folder_dataset(root, counts=(12, 6, 3), size=(10, 8)):
    rng = np.random.default_rng(0)
    for c, n in enumerate(counts):
        d = root / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(arr).save(d / f"{i:03d}.png")
    return root


def cfg(**kw):
    return DataConfig(**kw)


def test_digits_bundle_contract():
    b = build_data(cfg(source={"name": "digits"}, split={"val": 0.1, "test": 0.2}), seed=0)
    assert b.num_classes == 10 and b.channels == 1 and b.image_size == (8, 8)
    assert len(b.train) + len(b.val) + len(b.test) == 1797
    idx = {k: set(b.split_indices[k]["indices"]) for k in ("train", "val", "test")}
    assert not idx["train"] & idx["val"] and not idx["train"] & idx["test"] and not idx["val"] & idx["test"]
    assert abs(len(b.test) - 0.2 * 1797) < 10 and abs(len(b.val) - 0.1 * 1797) < 10
    assert b.train_counts.dtype == np.int64 and b.train_counts.tolist() == np.bincount(b.train.targets).tolist()
    all_px = b.train.tensor().double() / 255
    assert np.allclose(b.norm_mean, [all_px.mean().item()]) and np.allclose(b.norm_std, [all_px.std(unbiased=False).item()])
    json.dumps(b.split_indices)


def test_native_test_is_kept_and_val_is_carved_from_train(tmp_path):
    src = tmp_path / "ds"
    folder_dataset(src / "train", (20, 10))
    folder_dataset(src / "test", (4, 4))
    b = build_data(cfg(source={"name": "image_folder", "root": str(src)}, split={"val": 0.2}), seed=0)
    assert len(b.test) == 8 and b.split_indices["val"]["split"] == "train"
    assert b.val.class_counts().tolist() == [4, 2] and b.train_counts.tolist() == [16, 8]


def test_split_reuse_round_trip_and_file(tmp_path):
    c = cfg(source={"name": "digits"}, split={"seed": 5})
    a = build_data(c, seed=0)
    other = build_data(cfg(source={"name": "digits"}, split={"seed": 6}), seed=0)
    assert a.split_indices != other.split_indices
    again = build_data(cfg(source={"name": "digits"}, split={"seed": 6}), seed=0, splits=a.split_indices)
    assert again.split_indices == a.split_indices and again.train.ids == a.train.ids
    f = tmp_path / "splits.json"
    f.write_text(json.dumps(a.split_indices))
    from_file = build_data(cfg(source={"name": "digits"}, split={"file": str(f)}), seed=0)
    assert from_file.val.ids == a.val.ids
    bad = dict(a.split_indices, sizes={"all": 5})
    with pytest.raises(DataError, match="was made for a source"):
        build_data(c, seed=0, splits=bad)


def test_long_tail_on_digits_balanced_val_from_leftovers():
    b = build_data(cfg(source={"name": "digits"}, long_tail={"imbalance_ratio": 10, "val_per_class": 5}), seed=0)
    counts = b.train_counts
    assert counts[0] > counts[-1] and counts[-1] >= 1
    assert b.val.class_counts().tolist() == [5] * 10
    train_ids, val_ids = set(b.train.ids), set(b.val.ids)
    assert not train_ids & val_ids and not (train_ids | val_ids) & set(b.test.ids)


def test_tensor_cache_hit_and_lazy_equals_cached(tmp_path, monkeypatch):
    root = folder_dataset(tmp_path / "imgs")
    base = dict(source={"name": "image_folder", "root": str(root)}, image_size=[6, 4], cache_dir=str(tmp_path / "cache"))
    first = build_data(cfg(**base), seed=0)
    calls = []
    real = cache_mod.decode_all
    monkeypatch.setattr(cache_mod, "decode_all", lambda *a, **k: calls.append(1) or real(*a, **k))
    second = build_data(cfg(**base), seed=0)
    assert calls == [] and torch.equal(second.train.tensor(), first.train.tensor())
    build_data(cfg(**{**base, "image_size": 5}), seed=0)  # other decode settings: a new entry
    assert calls == [1]
    lazy = build_data(cfg(**base, cache=False), seed=0)
    assert type(lazy.train).__name__ == "FileImageDataset" and lazy.image_size == (6, 4)
    assert all(torch.equal(lazy.train[i][0], first.train[i][0]) for i in range(len(first.train)))
    path = lazy.train.paths[0]
    assert torch.equal(decode_image_file(path, cfg(**base), channels=3), first.train[0][0])


def test_bad_image_error_and_skip(tmp_path):
    root = folder_dataset(tmp_path / "imgs", (10, 10))
    (root / "class1" / "zz_bad.png").write_bytes(b"not a png at all")
    base = dict(source={"name": "image_folder", "root": str(root)}, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match=r"zz_bad.png' cannot be decoded"):
        build_data(cfg(**base), seed=0)
    b = build_data(cfg(**base, on_bad_image="skip"), seed=0)
    assert len(b.skipped["all"]) == 1 and len(b.train) + len(b.val) + len(b.test) == 20
    assert "skipped unreadable images: all 1" in describe(b)
    lazy = build_data(cfg(**base, on_bad_image="skip", cache=False), seed=0)
    assert len(lazy.skipped["all"]) == 1


def test_empty_class_after_split_and_other_config_errors(tmp_path):
    root = folder_dataset(tmp_path / "imgs", (10, 2))
    with pytest.raises(DataError, match=r"class 'class1' \(index 1\) has no training images after the split"):
        build_data(cfg(source={"name": "image_folder", "root": str(root)}, split={"test": 0.5, "val": 0.4}), seed=0)
    with pytest.raises(DataError, match=r"image folder '.*missing' not found"):
        build_data(cfg(source={"name": "image_folder", "root": str(tmp_path / "missing")}), seed=0)
    with pytest.raises(ConfigError, match=r"data.source.roots: 'roots' is not a parameter .*did you mean 'root'"):
        build_data(cfg(source={"name": "image_folder", "roots": "x"}), seed=0)
    with pytest.raises(ConfigError, match="split.val is 0"):
        build_data(cfg(source={"name": "digits"}, split={"val": 0.0}), seed=0)
    with pytest.raises(DataError, match="set data.image_size"):
        folder_dataset(tmp_path / "mixed", (3, 3))
        Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "mixed" / "class0" / "odd.png")
        build_data(cfg(source={"name": "image_folder", "root": str(tmp_path / "mixed")}, cache_dir=str(tmp_path / "c")), seed=0)


def test_normalize_modes_channels_and_cap():
    b = build_data(cfg(source={"name": "digits"}, normalize="imagenet", channels=3, image_size=12, max_per_class=7), seed=0)
    assert b.channels == 3 and b.image_size == (12, 12) and b.norm_mean == [0.485, 0.456, 0.406]
    assert b.train_counts.max() <= 7 and b.val.class_counts().max() <= 7
    img = b.train[0][0]
    assert torch.equal(img[0], img[1])
    n = build_data(cfg(source={"name": "digits"}, normalize={"mean": [0.5], "std": [0.2]}), seed=0)
    assert n.norm_mean == [0.5] and n.norm_std == [0.2]
    with pytest.raises(ConfigError, match="1-channel"):
        build_data(cfg(source={"name": "digits"}, normalize={"mean": [0.5, 0.5, 0.5], "std": [1, 1, 1]}), seed=0)


def test_describe_numbers_and_histogram(tmp_path):
    root = folder_dataset(tmp_path / "imgs", (150, 40, 10), size=(4, 4))
    b = build_data(cfg(source={"name": "image_folder", "root": str(root)}, split={"val": 0.1, "test": 0.0}), seed=0)
    text = describe(b)
    counts = b.train_counts
    assert f"imbalance ratio (max/min train count): {counts.max() / counts.min():.2f}" in text
    x = np.sort(counts).astype(float)
    gini = np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean())
    assert f"Gini coefficient of train counts: {gini:.3f}" in text
    assert "many 1, medium 1, few 1" in text
    png = plot_class_histogram(b, tmp_path / "h.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_describe(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text("data:\n  source: {name: digits}\nmodel: {name: whatever}\n")
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["data", "describe", "-c", "c.yaml", "data.long_tail.imbalance_ratio=10"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "imbalance ratio" in out and "class histogram" not in out and not list(tmp_path.glob("*.png"))  # nothing written unless asked
    args = parser.parse_args(["data", "describe", "-c", "c.yaml", "--out", "described"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert f"class histogram: {Path('described') / 'c_classes.png'}" in out and (tmp_path / "described" / "c_classes.png").is_file()
    assert "imbalance ratio" in (tmp_path / "described" / "c_describe.txt").read_text()
    assert not list(tmp_path.glob("*.png"))
    args = parser.parse_args(["data", "describe", "-c", "c.yaml", "--plot", "h.png"])
    assert args.func(args) == 0 and (tmp_path / "h.png").is_file()
    bad = parser.parse_args(["data", "describe", "-c", "c.yaml", "data.source.name=digitz"])
    with pytest.raises(ConfigError, match="did you mean 'digits'"):
        bad.func(bad)
