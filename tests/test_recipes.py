"""Every recipe in configs/ runs: one short epoch per stage on a few images per class.

The recipes read the real data in ../shared/data (CIFAR JPEG copies, HAM10000); they are skipped
with a reason when that folder is absent. The first run decodes each dataset into the tensor cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import longtail
from longtail.config import load_raw

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p.relative_to(ROOT) for p in (ROOT / "configs").rglob("*.yaml"))


def tiny_overrides(raw: dict, tmp_path: Path) -> list[str]:
    overrides = [
        f"output_dir={tmp_path}", "train.epochs=1", "train.progress=false", "train.tensorboard=false",
        "data.max_per_class=3", "data.batch_size=8", "data.eval_batch_size=64",
    ]
    overrides += [f"stages.{i}.epochs=1" for i in range(len(raw.get("stages") or []))]
    return overrides


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES, ids=[str(r) for r in RECIPES])
def test_recipe_runs_one_short_epoch(recipe, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    raw = load_raw(recipe)
    source = raw["data"]["source"]
    missing = [source[k] for k in ("path", "train", "val", "test", "root", "file", "image_root") if source.get(k) and not Path(source[k]).exists()]
    if missing:
        pytest.skip(f"{missing[0]} is not available (the fixture tests below cover recipes on data that is not shipped)")
    result = longtail.train(str(recipe), tiny_overrides(raw, tmp_path))
    assert result.finished
    res = result.results
    split = "test" if "test" in res else "val"
    assert 0.0 <= res[split]["balanced_accuracy"] <= 1.0
    paces = 1 + len(raw["spbl"].get("add_ratios", [0] * 5)) if raw.get("spbl") else 1  # SPBL trains its stages once per pace
    assert res["epochs"] == paces * max(1, len(raw.get("stages") or []))


def write_isic2018_fixture(root: Path) -> dict[str, Path]:
    """The ISIC 2018 task 3 files in their on-disk format: HAM10000 metadata (train), one-hot
    validation ground truth, the test image list, and JPEGs named by ISIC id."""
    images = root / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    dxs = ["mel", "nv", "bcc", "akiec", "bkl", "df", "vasc"]
    ids = {split: [f"ISIC_{split}{i:04d}" for i in range(n)] for split, n in (("1", 28), ("2", 14), ("3", 5))}
    for name in sum(ids.values(), []):
        Image.fromarray(rng.integers(0, 256, (45, 60, 3), dtype=np.uint8)).save(images / f"{name}.jpg")
    files = {"train": root / "HAM10000_metadata.csv", "val": root / "val_gt.csv", "test": root / "test_images.csv"}
    files["train"].write_text("lesion_id,image_id,dx,dx_type,age,sex,localization\n" + "".join(
        f"HAM_{i // 2:07d},{name},{dxs[i % 7]},histo,50.0,male,back\n" for i, name in enumerate(ids["1"])))
    files["val"].write_text("image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\n" + "".join(
        f"{name}," + ",".join("1.0" if k == i % 7 else "0.0" for k in range(7)) + "\n" for i, name in enumerate(ids["2"])))
    files["test"].write_text("image_id\n" + "".join(f"{name}\n" for name in ids["3"]))
    return {"images": images, **files}


@pytest.mark.slow
def test_isic2018_mbit_recipe_on_the_official_file_format(tmp_path, monkeypatch):
    """CSV ground truth -> `longtail data convert isic2018` -> MBIT JSON -> the MBIT ISIC 2018 recipe."""
    from longtail.cli import main

    monkeypatch.chdir(ROOT)
    f = write_isic2018_fixture(tmp_path / "isic2018")
    jsons = {}
    for split in ("train", "val", "test"):
        jsons[split] = tmp_path / f"{split}.json"
        assert main(["data", "convert", "isic2018", str(f[split]), "--root", str(f["images"]), "--out", str(jsons[split])]) == 0
    overrides = [
        f"output_dir={tmp_path / 'runs'}", "train.progress=false", "train.tensorboard=false",
        *(f"data.source.{s}={p}" for s, p in jsons.items()), f"data.source.root={f['images']}",
        "data.image_size=[40,52]", "data.train_transforms.1.size=32", "eval.tta.crop_size=32", "eval.tta.crops=9",
        "data.batch_size=8", "data.eval_batch_size=18", "model.pretrained=false", "model.arch=regnet_y_400mf",
        "train.epochs=2", "train.val_every=1", "class_weights.start_epoch=1", "class_weights.end_epoch=2",
    ]
    result = longtail.train("configs/isic2018/mbit.yaml", overrides)
    res = result.results
    assert res["class_names"] == ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    assert res["train_counts"] == [4] * 7 and 0.0 <= res["val"]["balanced_accuracy"] <= 1.0
    assert "test" not in res and res["test_unlabelled"]["images"] == 5  # ISIC withholds test labels
    test = np.load(result.run_dir / res["test_unlabelled"]["predictions"])
    assert test["logits"].shape == (5, 7) and list(test["ids"]) == [f"ISIC_3{i:04d}" for i in range(5)]
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["loss"], r["class_weights"]) for r in rows] == [("mwnl", "cls")] * 2


def write_isic2019_mel_nv_fixture(root: Path) -> tuple[Path, Path]:
    """ISIC 2019 training ground truth in its on-disk format (one-hot MEL..SCC,UNK floats) and JPEGs of
    several sizes (the recipe crops each to its centre square): 6 MEL, 10 NV and 4 images of other classes."""
    images = root / "ISIC_2019_Training_Input"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    columns = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
    labels = ["MEL"] * 6 + ["NV"] * 10 + ["BCC", "BKL", "SCC", "DF"]
    rows = []
    for i, label in enumerate(labels):
        name = f"ISIC_{i:07d}"
        h, w = (48, 64) if i % 2 else (64, 48)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(images / f"{name}.jpg")
        rows.append(f"{name}," + ",".join("1.0" if c == label else "0.0" for c in columns) + "\n")
    gt = root / "ISIC_2019_Training_GroundTruth.csv"
    gt.write_text("image," + ",".join(columns) + "\n" + "".join(rows))
    return gt, images


@pytest.mark.slow
def test_isic2019_hml_mel_nv_recipe_on_the_official_file_format(tmp_path, monkeypatch):
    """ISIC 2019 ground truth -> `longtail data convert isic2019 --csv` -> HMLoss's mel-vs-nv recipe, one epoch per stage."""
    from longtail.cli import main
    from longtail.optim import lr_factor

    monkeypatch.chdir(ROOT)
    gt, images = write_isic2019_mel_nv_fixture(tmp_path / "isic2019")
    table = tmp_path / "train.csv"
    assert main(["data", "convert", "isic2019", str(gt), "--root", str(images), "--out", str(tmp_path / "train.json"), "--csv", str(table)]) == 0
    overrides = [
        f"output_dir={tmp_path / 'runs'}", "train.progress=false", "train.tensorboard=false",
        f"data.source.file={table}", f"data.source.image_root={images}", "data.num_workers=0",
        "data.image_size=40", "data.batch_size=8", "data.eval_batch_size=8", "model.pretrained=false",
        "stages.0.epochs=1", "stages.1.epochs=1", "stages.1.schedule.epoch_offset=1",
    ]
    result = longtail.train("configs/isic2019/hml_mel_nv.yaml", overrides)
    res = result.results
    assert res["class_names"] == ["NV", "MEL"] and res["class_map"] == {"NV": ["NV"], "MEL": ["MEL"]}
    assert sum(res["train_counts"]) + res["val"]["num_samples"] + res["test"]["num_samples"] == 16  # the other classes are dropped
    assert res["stopped_epoch"] is None and res["epochs"] == 2
    rows = rundir_rows(result.run_dir)
    assert [r["loss"] for r in rows] == ["ce", "hml"]
    cfg = longtail.load_config(result.run_dir / "config.yaml")
    schedule = cfg.resolved_stages()[0].schedule
    assert [r["lr"] for r in rows] == pytest.approx([1e-3 * lr_factor(e, 2, schedule, 1e-3) for e in range(2)])  # one cycle over both stages
    # EfficientNet-B3 with HMLoss's --ratio_finetune 32: the first floor(0.68 * tensors) are frozen
    from longtail.models import build_model

    total = len(list(build_model(cfg.model, 2, 3, [1, 1]).parameters()))
    assert {r["trainable_tensors"] for r in rows} == {total - int(0.68 * total)}


def rundir_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
