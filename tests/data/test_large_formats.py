"""ImageNet-LT list files (with the classifier-balancing path rewrite) and iNaturalist 2018 JSON load
from fixtures in their exact formats, with the right class counts and shot groups."""

from __future__ import annotations

import json

import numpy as np
import pytest

from longtail.core.errors import DataError
from longtail.core.registry import DATASETS
from longtail.core.schema import DataConfig
from longtail.data import build_data
from longtail.metrics import shot_groups

from ..large_fixtures import TRAIN_COUNTS, WNIDS, write_imagenet_lt_fixture, write_inat2018_fixture

#: the classifier-balancing loader's rewrite (configs/imagenet_lt/ce_resnet10.yaml)
IMAGENET_LT_REWRITE = [["^train/", "ILSVRC2012_img_train/"], ["^val/[^/]+/", "ILSVRC2012_img_val/"]]


def test_imagenet_lt_lists_load_with_the_rewrite(tmp_path):
    f = write_imagenet_lt_fixture(tmp_path / "ImageNet")
    src = DATASETS.get("list_file")(train=str(f["train"]), val=str(f["val"]), test=str(f["test"]),
                                    root=str(f["root"]), num_classes=4, rewrite=IMAGENET_LT_REWRITE)
    train, val, test = src.splits["train"], src.splits["val"], src.splits["test"]
    assert train.class_counts().tolist() == list(TRAIN_COUNTS)
    assert val.class_counts().tolist() == [2] * 4 and test.class_counts().tolist() == [2] * 4
    # ids are the listed paths; files are where the original loader looks for them
    assert train.ids[0] == f"train/{WNIDS[0]}/{WNIDS[0]}_1000.JPEG"
    assert train.paths[0] == str(f["root"] / "ILSVRC2012_img_train" / WNIDS[0] / f"{WNIDS[0]}_1000.JPEG")
    assert test.ids[0] == f"val/{WNIDS[0]}/ILSVRC2012_val_00000001.JPEG"
    assert test.paths[0] == str(f["root"] / "ILSVRC2012_img_val" / "ILSVRC2012_val_00000001.JPEG")
    groups = shot_groups(train.class_counts(), (100, 20))
    assert groups == {"many": [0], "medium": [1], "few": [2, 3]}


def test_imagenet_lt_without_the_rewrite_names_the_missing_file(tmp_path):
    f = write_imagenet_lt_fixture(tmp_path / "ImageNet")
    cfg = DataConfig(source={"name": "list_file", "train": str(f["train"]), "val": str(f["val"]), "root": str(f["root"]), "num_classes": 4},
                     cache=False)
    with pytest.raises(DataError, match=r"train/n01440764/n01440764_1000.JPEG"):
        build_data(cfg, seed=0)


def test_rewrite_rules_are_checked():
    with pytest.raises(DataError, match=r"rewrite entry 0 .*\[pattern, replacement\]"):
        DATASETS.get("list_file")(train="x", root=".", rewrite=["^train/"])


def test_inat2018_json_loads_with_category_names_and_counts(tmp_path):
    f = write_inat2018_fixture(tmp_path / "iNat")
    cfg = DataConfig(source={"name": "inat_json", "train": str(f["train"]), "val": str(f["val"]), "root": str(f["root"])},
                     split={"val": 0.0}, image_size=8, cache=False)
    bundle = build_data(cfg, seed=0)
    assert bundle.class_names == [f"Species {c}" for c in range(4)]
    assert bundle.train_counts.tolist() == list(TRAIN_COUNTS) and bundle.val.class_counts().tolist() == [3] * 4
    assert bundle.storage() == {"train": "stream", "val": "stream"}
    data = json.loads(f["train"].read_text())
    assert bundle.train.ids[:2] == [str(im["id"]) for im in data["images"][:2]]
    x, y = bundle.train[0]
    assert tuple(x.shape) == (3, 8, 8) and y == 0


def test_inat_json_unlabelled_test_and_errors(tmp_path):
    f = write_inat2018_fixture(tmp_path / "iNat")
    val = json.loads(f["val"].read_text())
    test_file = tmp_path / "test2018.json"  # the official test JSON has images but no annotations
    test_file.write_text(json.dumps({"images": val["images"], "categories": val["categories"]}))
    src = DATASETS.get("inat_json")(train=str(f["train"]), test=str(test_file), root=str(f["root"]))
    assert np.all(src.splits["test"].targets == -1)
    val["annotations"][0]["category_id"] = 99
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(val))
    with pytest.raises(DataError, match="category_id 99 is not among the categories"):
        DATASETS.get("inat_json")(train=str(f["train"]), val=str(bad), root=str(f["root"]))
    with pytest.raises(DataError, match="no 'images' list"):
        bad.write_text(json.dumps({"annotations": []}))
        DATASETS.get("inat_json")(train=str(bad), root=str(f["root"]))
