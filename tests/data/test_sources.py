"""Every on-disk format, generated as a tiny fixture in its exact layout, loads with the right
counts, labels, class names and groups; bad input gives a one-line error."""

import csv
import json
import re
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from longtail.catalog import registered as components  # noqa: F401  (registers the sources, as the CLI does)
from longtail.core.errors import ConfigError, DataError
from longtail.core.registry import DATASETS


def write_png(path, value, size=(6, 5), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size[1], size[0], 3) if mode == "RGB" else (size[1], size[0]), value, dtype=np.uint8)
    Image.fromarray(arr, mode=mode).save(path)
    return path


def create(name, **kw):
    return DATASETS.create(name, **kw)


def test_digits_source():
    src = create("digits")
    ds = src.splits["all"]
    assert len(ds) == 1797 and ds.class_names == [str(i) for i in range(10)]
    assert np.bincount(ds.targets).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    img, y = ds[0]
    assert img.dtype == torch.uint8 and img.shape == (1, 8, 8) and y == 0
    from sklearn.datasets import load_digits

    raw = load_digits().images
    assert torch.equal(img[0], torch.from_numpy(np.rint(raw[0] * 255 / 16).astype(np.uint8)))  # 16 -> 255
    assert int(ds.tensor().max()) == 255


def test_image_folder_flat_and_split_layouts(tmp_path):
    for c, n in (("cat", 3), ("dog", 2)):
        for i in range(n):
            write_png(tmp_path / "flat" / c / f"{i}.png", 10 * i)
    (tmp_path / "flat" / "cat" / "notes.txt").write_text("not an image")
    src = create("image_folder", root=str(tmp_path / "flat"))
    ds = src.splits["all"]
    assert src.class_names == ["cat", "dog"] and ds.targets.tolist() == [0, 0, 0, 1, 1]
    assert ds.ids[3] == "dog/0.png"
    src = create("image_folder", root=str(tmp_path / "flat"), classes=["dog", "cat"])
    assert src.splits["all"].targets.tolist() == [0, 0, 1, 1, 1]
    for s in ("train", "test"):
        for c in ("a", "b"):
            write_png(tmp_path / "split" / s / c / "x.png", 1)
    src = create("image_folder", root=str(tmp_path / "split"))
    assert set(src.splits) == {"train", "test"} and len(src.splits["test"]) == 2
    with pytest.raises(DataError, match="class folder .*zebra.* not found"):
        create("image_folder", root=str(tmp_path / "flat"), classes=["cat", "zebra"])


def make_csv(path, rows, header):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_csv_source_names_groups_splits_and_errors(tmp_path):
    for i in range(6):
        write_png(tmp_path / "img" / f"im{i}.png", i)
    rows = [[f"im{i}", lab, f"L{i // 2}", s] for i, (lab, s) in enumerate(
        zip(["nv", "mel", "nv", "bcc", "mel", ""], ["train", "train", "train", "val", "train", "test"]))]
    f = make_csv(tmp_path / "gt.csv", rows, ["image", "dx", "lesion", "split"])
    src = create("csv", file=str(f), root=str(tmp_path / "img"), label_column="dx", group_column="lesion",
                 split_column="split", extension=".png", classes=["mel", "nv", "bcc"])
    tr = src.splits["train"]
    assert tr.targets.tolist() == [1, 0, 1, 0] and tr.groups.tolist() == ["L0", "L0", "L1", "L2"]
    assert src.splits["test"].targets.tolist() == [-1] and src.splits["val"].targets.tolist() == [2]
    img, _ = tr[0]
    assert img.shape == (3, 5, 6) and int(img[0, 0, 0]) == 0
    nosplit = make_csv(tmp_path / "a.csv", [r[:2] for r in rows[:5]], ["image", "dx"])
    src = create("csv", file=str(nosplit), root=str(tmp_path / "img"), label_column="dx", extension=".png")
    assert src.class_names == ["bcc", "mel", "nv"] and src.splits["all"].targets.tolist() == [2, 1, 2, 0, 1]
    with pytest.raises(DataError, match=r"label 'bcc' .* not in the class list"):
        create("csv", file=str(nosplit), root=str(tmp_path / "img"), label_column="dx", classes=["mel", "nv"])
    with pytest.raises(DataError, match=r"has no column 'label' \(columns: image, dx\); set data.source.label_column"):
        create("csv", file=str(nosplit), root=str(tmp_path / "img"))
    with pytest.raises(DataError, match=r"image root .* not found"):
        create("csv", file=str(nosplit), root=str(tmp_path / "nope"), label_column="dx")


def test_list_file_source_spbl_layout(tmp_path):
    root = tmp_path / "raw" / "images"
    for i in range(4):
        write_png(root / f"cls{i % 2}" / f"a b{i}.png", i)  # a space in the file name
    (tmp_path / "train.txt").write_text("cls0/a b0.png 0\ncls1/a b1.png 1\ncls0/a b2.png 0\n")
    (tmp_path / "val.txt").write_text("cls1/a b3.png 1\n")
    (tmp_path / "test.txt").write_text("cls1/a b3.png\n")
    src = create("list_file", train=str(tmp_path / "train.txt"), val=str(tmp_path / "val.txt"),
                 test=str(tmp_path / "test.txt"), root=str(root))
    assert src.class_names == ["0", "1"] and src.splits["train"].targets.tolist() == [0, 1, 0]
    assert src.splits["test"].targets.tolist() == [-1] and src.splits["val"].ids == ["cls1/a b3.png"]
    (tmp_path / "bad.txt").write_text("cls0/a b0.png 5\n")
    with pytest.raises(DataError, match=r"label 5 .* outside the 2 classes"):
        create("list_file", train=str(tmp_path / "bad.txt"), root=str(root), num_classes=2)


def test_mbit_json_with_unlabelled_test_and_num_classes_check(tmp_path):
    for i in range(5):
        write_png(tmp_path / "imgs" / f"ISIC_{i}.png", 40 * i)
    ann = lambda i, c: {"image_id": f"ISIC_{i}", "category_id": c, "derm_height": 5, "derm_width": 6, "derm_path": f"imgs/ISIC_{i}.png"}
    (tmp_path / "train.json").write_text(json.dumps({"annotations": [ann(0, 0), ann(1, 2), ann(2, 1)], "num_classes": 3}))
    (tmp_path / "val.json").write_text(json.dumps({"annotations": [ann(3, 1)], "num_classes": 3}))
    test = [{"image_id": "ISIC_4", "derm_path": "imgs/ISIC_4.png"}]
    (tmp_path / "test.json").write_text(json.dumps({"annotations": test, "num_classes": 4}))
    src = create("mbit_json", train=str(tmp_path / "train.json"), val=str(tmp_path / "val.json"),
                 test=str(tmp_path / "test.json"), root=str(tmp_path), classes=["MEL", "SK", "NV"])
    assert src.splits["train"].targets.tolist() == [0, 2, 1] and src.splits["test"].targets.tolist() == [-1]
    assert src.splits["train"].ids == ["ISIC_0", "ISIC_1", "ISIC_2"]
    assert int(src.splits["test"][0][0][0, 0, 0]) == 160
    with pytest.raises(DataError, match=r"num_classes=3 but the class list has 2 names"):
        create("mbit_json", train=str(tmp_path / "train.json"), root=str(tmp_path), classes=["MEL", "SK"])


def save_medmnist(path, sizes, shape, classes, rgb=False):
    rng = np.random.default_rng(0)
    arrays = {}
    for s, n in sizes.items():
        arrays[f"{s}_images"] = rng.integers(0, 256, (n, *shape, 3) if rgb else (n, *shape), dtype=np.uint8)
        arrays[f"{s}_labels"] = (np.arange(n) % classes).reshape(n, 1).astype(np.uint8)
    np.savez(path, **arrays)
    return arrays


def test_medmnist_npz_fixture_any_resolution(tmp_path):
    arrays = save_medmnist(tmp_path / "dermamnist_64.npz", {"train": 14, "val": 7, "test": 7}, (64, 64), 7, rgb=True)
    src = create("medmnist", root=str(tmp_path / "dermamnist_64.npz"))
    assert len(src.class_names) == 7 and src.class_names[4] == "melanoma"
    img, y = src.splits["train"][3]
    assert img.shape == (3, 64, 64) and y == 3
    assert torch.equal(img, torch.from_numpy(arrays["train_images"][3]).permute(2, 0, 1))
    np.savez(tmp_path / "broken.npz", train_images=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DataError, match="lacks train_labels"):
        create("medmnist", root=str(tmp_path / "broken.npz"))


def make_ham_folder(root, dx_by_image):
    rows = []
    for i, (dx, lesion) in enumerate(dx_by_image):
        write_png(root / "images" / f"ISIC_{i:07d}.jpg", i, size=(20, 15))  # JPEG name, PNG bytes: PIL sniffs
        rows.append([lesion, f"ISIC_{i:07d}", dx, "histo", "50.0", "male", "back"])
    make_csv(root / "HAM10000_metadata.csv", rows, ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"])


def test_ham10000_layout_folder_and_tar(tmp_path):
    data = [("nv", "HAM_1"), ("nv", "HAM_1"), ("mel", "HAM_2"), ("bkl", "HAM_3"), ("vasc", "HAM_4"), ("df", "HAM_5"),
            ("akiec", "HAM_6"), ("bcc", "HAM_7")]
    make_ham_folder(tmp_path / "ham", data)
    src = create("ham10000", root=str(tmp_path / "ham"))
    ds = src.splits["all"]
    assert src.class_names == ["mel", "nv", "bcc", "akiec", "bkl", "df", "vasc"]
    assert ds.targets.tolist() == [1, 1, 0, 4, 6, 5, 3, 2] and ds.groups.tolist()[:2] == ["HAM_1", "HAM_1"]
    tar = tmp_path / "ham.tar.gz"
    with tarfile.open(tar, "w:gz") as t:
        t.add(tmp_path / "ham", arcname=".")
    src2 = create("ham10000", root=str(tar), cache_dir=str(tmp_path / "cache"))
    assert src2.splits["all"].targets.tolist() == ds.targets.tolist()
    assert torch.equal(src2.splits["all"][2][0], ds[2][0])


def test_cifar_jpeg_folder_official_order(tmp_path):
    from longtail.data.sources.named import CIFAR10_CLASSES

    for s in ("train", "test"):
        for c in CIFAR10_CLASSES:
            for i in range(2):
                write_png(tmp_path / "cifar10" / s / c / f"{i:04d}.jpg", i, size=(32, 32))
    src = create("cifar_jpeg", root=str(tmp_path))
    assert src.class_names == CIFAR10_CLASSES and src.class_names[0] == "airplane"
    assert src.splits["train"].ids[:3] == ["train/airplane/0000.jpg", "train/airplane/0001.jpg", "train/automobile/0000.jpg"]
    assert len(src.splits["test"]) == 20


def test_missing_and_corrupt_images(tmp_path):
    write_png(tmp_path / "c" / "a" / "ok.png", 1)
    write_png(tmp_path / "c" / "a" / "ok2.png", 1)
    write_png(tmp_path / "c" / "b" / "ok.png", 2)
    write_png(tmp_path / "c" / "b" / "ok2.png", 2)
    (tmp_path / "c" / "b" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    src = create("image_folder", root=str(tmp_path / "c"))
    bad = src.splits["all"].ids.index("b/bad.png")
    with pytest.raises(DataError, match=r"image file '.*bad.png' cannot be decoded.*on_bad_image=skip"):
        src.splits["all"][bad]
    with pytest.raises(DataError, match=r"image file '.*gone.png' not found"):
        src.splits["all"].with_decoder(src.splits["all"].decoder).decoder(str(tmp_path / "gone.png"))


# ------------------------------------------------------------------- one name for the data location
def test_every_source_with_a_data_location_calls_it_root():
    located = [n for n in DATASETS.names() if n != "digits"]
    for name in located:
        assert "root" in DATASETS.accepted_kwargs(name), name
    old_names = {"ham10000": "path", "cifar_jpeg": "path", "medmnist": "file", "csv": "image_root", "list_file": "image_root"}
    for name, old in old_names.items():
        kwargs, messages = DATASETS.rename_deprecated(name, {old: "x"}, where="data.source")
        assert kwargs == {"root": "x"} and messages == [f"data.source.{old} is deprecated for dataset '{name}'; rename it to data.source.root (same meaning)"]


def test_old_location_names_still_work_with_a_deprecation_warning(tmp_path, caplog):
    import yaml

    from longtail.catalog.check import load_config

    make_ham_folder(tmp_path / "ham", [("nv", "HAM_1"), ("mel", "HAM_2")])
    with pytest.warns(DeprecationWarning, match="^path is deprecated for dataset 'ham10000'; rename it to root"):
        src = create("ham10000", path=str(tmp_path / "ham"))
    assert src.splits["all"].targets.tolist() == [1, 0]
    cfg_file = tmp_path / "old.yaml"
    cfg_file.write_text(yaml.safe_dump({"data": {"source": {"name": "ham10000", "path": str(tmp_path / "ham")}}}))
    with pytest.warns(DeprecationWarning) as record:
        cfg = load_config(cfg_file)
    assert str(record[0].message) == f"{cfg_file}: data.source.path is deprecated for dataset 'ham10000'; rename it to data.source.root (same meaning)"
    assert cfg.data.source.kwargs == {"root": str(tmp_path / "ham")}  # the run's config.yaml says root
    assert "rename it to data.source.root" in caplog.text  # the command line sees it too
    with pytest.raises(ConfigError, match="image_root and root are both set for dataset 'csv'; 'image_root' is the deprecated name of 'root': keep only root"):
        create("csv", file="x.csv", image_root="a", root="b")


def test_a_missing_data_location_names_the_config_file(tmp_path):
    import yaml

    from longtail.catalog.check import load_config
    from longtail.data import build_data

    cfg_file = tmp_path / "recipe.yaml"
    cfg_file.write_text(yaml.safe_dump({"data": {"source": {"name": "ham10000", "root": str(tmp_path / "nowhere")}}}))
    with pytest.raises(DataError, match=rf"^{re.escape(str(cfg_file))}: dataset folder or archive '.*nowhere' not found or not a folder; set data.source.root"):
        build_data(load_config(cfg_file).data, seed=0)
    cfg_file.write_text(yaml.safe_dump({"data": {"source": {"name": "image_folder"}}}))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(cfg_file))}: data.source \(image_folder\): .*'root'; set data.source.root$"):
        build_data(load_config(cfg_file).data, seed=0)
