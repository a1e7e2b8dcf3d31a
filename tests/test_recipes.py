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
from longtail.core.config import load_raw

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p.relative_to(ROOT) for p in (ROOT / "configs").rglob("*.yaml"))

#: what one short epoch per stage cannot take as the recipe sets it, each with why
SHORT_RUN = {
    # a 4-batch stage 1 leaves BatchNorm's running statistics near their start, so the frozen backbone's
    # features are huge and the official stage-2 lr 0.1 on the logit scales explodes; 98 x 128 draws
    # would be 1568 batches of 8
    "configs/cifar10_lt/mislas.yaml": ["stages.1.optimizer.lr=0.01", "stages.1.sampler.num_samples=64"],
}


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
    missing = [source[k] for k in ("root", "file", "train", "val", "test") if source.get(k) and not Path(source[k]).exists()]
    if missing:
        pytest.skip(f"{missing[0]} is not available (the fixture tests below cover recipes on data that is not shipped)")
    result = longtail.train(str(recipe), tiny_overrides(raw, tmp_path) + SHORT_RUN.get(recipe.as_posix(), []))
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
    from longtail.cli.commands import main

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
    sub = tmp_path / "isic2018_submission.csv"
    assert main(["predict", str(result.run_dir), str(f["images"]), "--format", "isic2018", "--no-rule-051", "--out", str(sub)]) == 0
    lines = sub.read_text().splitlines()
    assert lines[0] == "image,MEL,NV,BCC,AKIEC,BKL,DF,VASC" and len(lines) == 1 + 47
    assert lines[1].split(",")[0] == "ISIC_10000"
    np.testing.assert_allclose([sum(float(v) for v in line.split(",")[1:]) for line in lines[1:]], 1.0, atol=1e-5)
    assert main(["predict", str(result.run_dir), str(f["images"]), "--format", "isic2019", "--out", str(sub)]) == 2  # other classes


def _smooth_jpegs(folder: Path, names: list[str], shape: tuple[int, int], seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)).save(folder / f"{name}.jpg")


MBIT_TINY = [
    "train.progress=false", "train.tensorboard=false", "data.batch_size=8", "data.eval_batch_size=18", "model.pretrained=false",
    "train.epochs=1", "train.val_every=1", "data.train_transforms.1.size=32", "eval.tta.crop_size=32", "eval.tta.crops=9",
]


@pytest.mark.slow
def test_isic2017_mbit_recipe_on_the_official_file_format(tmp_path, monkeypatch):
    """ISIC 2017 ground truth -> `longtail data convert isic2017 --small` -> the MBIT ISIC 2017 recipe (isic2017 table)."""
    from longtail.cli.commands import main

    monkeypatch.chdir(ROOT)
    ids = {s: [f"ISIC_{s}{i:03d}" for i in range(n)] for s, n in (("1", 12), ("2", 6), ("3", 6))}
    _smooth_jpegs(tmp_path / "images", sum(ids.values(), []), (60, 80), 0)
    jsons = {}
    for split, key in (("train", "1"), ("val", "2"), ("test", "3")):
        gt = tmp_path / f"{split}_gt.csv"
        gt.write_text("image_id,melanoma,seborrheic_keratosis\n" + "".join(
            f"{name},{float(i % 3 == 0)},{float(i % 3 == 1)}\n" for i, name in enumerate(ids[key])))
        jsons[split] = tmp_path / f"{split}.json"
        assert main(["data", "convert", "isic2017", str(gt), "--root", str(tmp_path / "images"), "--out", str(jsons[split]),
                     "--small", str(tmp_path / "small"), "--short-side", "45"]) == 0
    overrides = [f"output_dir={tmp_path / 'runs'}", *MBIT_TINY, *(f"data.source.{s}={p}" for s, p in jsons.items()),
                 f"data.source.root={tmp_path / 'small'}", "data.image_size=[45,60]", "model.arch=regnet_y_400mf"]
    result = longtail.train("configs/isic2017/mbit.yaml", overrides)
    res = result.results
    assert res["class_names"] == ["MEL", "SK", "NV"] and res["train_counts"] == [4, 4, 4]
    assert set(res["test"]["isic2017"]) >= {"auc", "accuracy", "balanced_accuracy", "precision"}
    assert "ISIC 2017 (MEL + SK)" in (result.run_dir / "report.md").read_text()


def write_isic2019_fixture(root: Path) -> dict[str, Path]:
    """The ISIC 2019 files in their on-disk format: the training ground truth (8 classes + an UNK column
    of zeros), the test metadata list, JPEGs named by ISIC id with dark top and bottom borders."""
    classes = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"]
    train_ids = [f"ISIC_1{i:06d}" for i in range(32)]
    test_ids = [f"ISIC_2{i:06d}" for i in range(5)]
    rng = np.random.default_rng(1)
    for folder, names in (("train_images", train_ids), ("test_images", test_ids)):
        (root / folder).mkdir(parents=True)
        for name in names:
            arr = rng.integers(40, 256, (48, 64, 3), dtype=np.uint8)
            arr[:4] = arr[-3:] = 0
            Image.fromarray(arr).save(root / folder / f"{name}.jpg")
    gt = root / "ISIC_2019_Training_GroundTruth.csv"
    gt.write_text("image," + ",".join(classes) + ",UNK\n" + "".join(
        f"{name}," + ",".join("1.0" if k == i % 8 else "0.0" for k in range(8)) + ",0.0\n" for i, name in enumerate(train_ids)))
    test = root / "ISIC_2019_Test_Metadata.csv"
    test.write_text("image,age_approx,anatom_site_general,sex\n" + "".join(f"{name},55.0,anterior torso,female\n" for name in test_ids))
    return {"train": gt, "test": test, "train_images": root / "train_images", "test_images": root / "test_images"}


def read_submission(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    rows = [line.split(",") for line in path.read_text().splitlines()]
    return rows[0], [r[0] for r in rows[1:]], np.array([[float(v) for v in r[1:]] for r in rows[1:]])


@pytest.mark.slow
def test_isic2019_mbit_recipe_and_its_challenge_submission(tmp_path, monkeypatch):
    """ISIC 2019 ground truth -> convert --small --remove-borders -> the MBIT ISIC 2019 recipe -> `longtail
    predict --format isic2019`: header, one row per test image, rows that sum to 1 (UNK 0), the 0.51 rule."""
    from longtail import api
    from longtail.cli.commands import main

    monkeypatch.chdir(ROOT)
    f = write_isic2019_fixture(tmp_path / "isic2019")
    jsons = {s: tmp_path / f"{s}.json" for s in ("train", "test")}
    for split in ("train", "test"):
        assert main(["data", "convert", "isic2019", str(f[split]), "--root", str(f[f"{split}_images"]), "--out", str(jsons[split]),
                     "--small", str(tmp_path / "small"), "--remove-borders", "--short-side", "40"]) == 0
    overrides = [f"output_dir={tmp_path / 'runs'}", *MBIT_TINY, *(f"data.source.{s}={p}" for s, p in jsons.items()),
                 f"data.source.root={tmp_path / 'small'}", "data.image_size=40", "data.num_workers=0", "model.arch=regnet_y_400mf",
                 "data.split.val=0.25"]
    result = longtail.train("configs/isic2019/mbit.yaml", overrides)
    res = result.results
    assert res["class_names"] == ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"]
    assert res["test_unlabelled"]["images"] == 5

    out = tmp_path / "submission.csv"
    assert main(["predict", str(result.run_dir), str(f["test_images"]), "--format", "isic2019", "--out", str(out)]) == 0
    header, ids, values = read_submission(out)
    assert header == ["image", "MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
    assert ids == [f"ISIC_2{i:06d}" for i in range(5)]
    assert values.shape == (5, 9) and (values >= 0).all() and (values <= 1).all()
    np.testing.assert_allclose(values[:, 8], 0.0)  # VALID_ADD_ONE_CLASS False: UNK is 0
    probs = np.array([[r[c] for c in res["class_names"]] for r in api.predict(result.run_dir, [f["test_images"]])])
    expected = np.c_[probs, np.zeros(5)]
    low = expected.max(1) <= 0.5
    expected[low, expected[low].argmax(1)] = 0.51
    np.testing.assert_allclose(values, expected, atol=2e-6)
    np.testing.assert_allclose(values[~low].sum(1), 1.0, atol=1e-5)  # a softmax row sums to 1 ...
    np.testing.assert_allclose(values[low].sum(1), 1.0 - probs[low].max(1) + 0.51, atol=1e-5)  # ... unless raised to 0.51
    raw = tmp_path / "submission_raw.csv"
    assert main(["predict", str(result.run_dir), str(f["test_images"]), "--format", "isic2019", "--no-rule-051", "--out", str(raw)]) == 0
    np.testing.assert_allclose(read_submission(raw)[2].sum(1), 1.0, atol=1e-5)

    # MBIT's add-one-class mode at prediction time: sigmoid scores + UNK = 1 - max, re-softmaxed (rows sum to 1)
    out2 = tmp_path / "submission_unk.csv"
    assert main(["predict", str(result.run_dir), str(f["test_images"]), "eval.unk_class=sigmoid", "--format", "isic2019",
                 "--no-rule-051", "--out", str(out2)]) == 0
    _, _, sig = read_submission(out2)
    np.testing.assert_allclose(sig.sum(1), 1.0, atol=1e-5)
    assert (sig[:, 8] > 0).all()


@pytest.mark.slow
def test_derm7pt_mbit_recipe_on_the_official_file_format(tmp_path, monkeypatch):
    """MBIT's Derm7pt split lists -> `longtail data convert derm7pt` -> the MBIT Derm7pt recipe (25 px border crop)."""
    from longtail.cli.commands import main

    monkeypatch.chdir(ROOT)
    images = tmp_path / "images"
    jsons = {}
    for split, n in (("train", 15), ("val", 5), ("test", 5)):
        names = [f"{split}{i:03d}" for i in range(n)]
        _smooth_jpegs(images / "derm", names, (90, 120), n)
        _smooth_jpegs(images / "clinic", names, (90, 120), n + 1)
        items = [{"image_id": name, "category_id": i % 5, "derm_path": f"derm/{name}.jpg", "clinic_path": f"clinic/{name}.jpg"}
                 for i, name in enumerate(names)]
        src = tmp_path / f"Derm_7pt_{split}.json"
        src.write_text(json.dumps(items))
        jsons[split] = tmp_path / f"{split}.json"
        assert main(["data", "convert", "derm7pt", str(src), "--root", str(images), "--out", str(jsons[split])]) == 0
    overrides = [f"output_dir={tmp_path / 'runs'}", *MBIT_TINY, *(f"data.source.{s}={p}" for s, p in jsons.items()),
                 f"data.source.root={images}", "data.image_size=[40,62]", "model.arch=regnet_y_400mf"]
    res = longtail.train("configs/derm7pt/mbit.yaml", overrides).results
    assert res["class_names"] == ["BCC", "NV", "MEL", "MISC", "SK"] and res["train_counts"] == [3] * 5
    assert 0.0 <= res["test"]["balanced_accuracy"] <= 1.0


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
    from longtail.cli.commands import main
    from longtail.engine.optim import lr_factor

    monkeypatch.chdir(ROOT)
    gt, images = write_isic2019_mel_nv_fixture(tmp_path / "isic2019")
    table = tmp_path / "train.csv"
    assert main(["data", "convert", "isic2019", str(gt), "--root", str(images), "--out", str(tmp_path / "train.json"), "--csv", str(table)]) == 0
    overrides = [
        f"output_dir={tmp_path / 'runs'}", "train.progress=false", "train.tensorboard=false",
        f"data.source.file={table}", f"data.source.root={images}", "data.num_workers=0",
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


LARGE_SCALE = [r for r in RECIPES if r.parts[1] in ("imagenet_lt", "inat2018")]


@pytest.mark.slow
@pytest.mark.parametrize("recipe", LARGE_SCALE, ids=[str(r) for r in LARGE_SCALE])
def test_large_scale_recipes_on_fixtures_in_the_official_formats(recipe, tmp_path, monkeypatch):
    """ImageNet-LT list files (with the classifier-balancing path rewrite) and iNaturalist 2018 JSON:
    each recipe trains one short epoch per stage on a fixture in the official format, with the recipe's
    own source settings and the standard 100 / 20 shot groups (one many, one medium, two few classes)."""
    from .large_fixtures import TRAIN_COUNTS, write_imagenet_lt_fixture, write_inat2018_fixture

    monkeypatch.chdir(ROOT)
    raw = load_raw(recipe)
    if recipe.parts[1] == "imagenet_lt":
        f = write_imagenet_lt_fixture(tmp_path / "ImageNet")
        source = [f"data.source.train={f['train']}", f"data.source.val={f['val']}", f"data.source.test={f['test']}",
                  f"data.source.root={f['root']}", "data.source.num_classes=4"]
    else:
        f = write_inat2018_fixture(tmp_path / "iNat")
        source = [f"data.source.train={f['train']}", f"data.source.test={f['val']}", f"data.source.root={f['root']}"]
    overrides = [o for o in tiny_overrides(raw, tmp_path) if not o.startswith("data.max_per_class")] + source + [
        "data.batch_size=32", "data.num_workers=0", "data.preprocess.0.size=20", "data.train_transforms.0.size=16",
        "data.eval_transforms.0.size=16", "train.precision='32'", "train.channels_last=false",
        # lr 0.2 at batch 512 diverges at batch 32 on noise images (ResNet-50 / ResNeXt-50 from scratch),
        # and a last batch of 2 images at 1 x 1 feature maps gives BatchNorm degenerate statistics
        "data.drop_last=true",
        "optimizer.lr=0.01", *(f"stages.{i}.optimizer.lr=0.01" for i, s in enumerate(raw.get("stages") or []) if s.get("optimizer")),
    ]
    result = longtail.train(str(recipe), overrides)
    res = result.results
    assert result.finished and res["train_counts"][2:] == list(TRAIN_COUNTS)[2:]  # (iNat carves 5% validation from train)
    shots = res["test"]["shots"]
    assert res["test"]["shot_rule"].startswith("fixed: many > 100, few < 20")
    assert [shots[g]["n_classes"] for g in ("many", "medium", "few")] == [1, 1, 2]
    assert json.loads((result.run_dir / "data.json").read_text())["storage"]["train"] == "stream"
