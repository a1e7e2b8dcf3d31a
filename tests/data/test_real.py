"""The real datasets in /work/shared/data (skipped where absent): CIFAR-LT counts from the JPEG
tarballs, the HAM10000 lesion-grouped split, official MedMNIST files."""

import os
from pathlib import Path

import numpy as np
import pytest

from longtail.core.registry import DATASETS
from longtail.core.schema import DataConfig
from longtail.data import build_data
from longtail.data.longtail import make_long_tailed

SHARED = Path(os.environ.get("LONGTAIL_SHARED_DATA", "/work/shared/data"))


def need(name):
    p = SHARED / name
    if not p.is_file():
        pytest.skip(f"{p} not available")
    return str(p)


@pytest.mark.slow
def test_cifar10_lt_from_real_jpeg_tar():
    """Decoded once into the tensor cache (~2 min on 2 cores the first time, seconds afterwards)."""
    path = need("cifar10_jpeg.tar.gz")
    src = DATASETS.create("cifar_jpeg", root=path)
    train = src.splits["train"]
    assert len(train) == 50000 and np.bincount(train.targets).tolist() == [5000] * 10
    lt = make_long_tailed(train.targets, 10, recipe="ldam", imbalance_ratio=100, seed=0)
    assert len(lt.train) == 12406
    b = build_data(DataConfig(source={"name": "cifar_jpeg", "root": path}, long_tail={"imbalance_ratio": 100}), seed=0)
    # the head class has no images left out by the recipe, so its 25 validation images come from training
    assert b.train_counts.tolist() == [4975, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert len(b.train) + int((b.val.targets == 0).sum()) == 12406 and len(b.test) == 10000
    assert b.val.class_counts().tolist() == [25] * 10
    assert set(b.train.ids) | set(b.val.ids) >= {train.ids[i] for i in lt.train}
    assert b.image_size == (32, 32) and np.allclose(b.norm_mean, [0.4987, 0.5041, 0.4923], atol=2e-3)
    assert train.ids[train.targets.tolist().index(6)] == "train/frog/0000.jpg"


@pytest.mark.slow
def test_cifar100_lt_count_from_real_jpeg_tar():
    path = need("cifar100_jpeg.tar.gz")
    src = DATASETS.create("cifar_jpeg", root=path)
    targets = src.splits["train"].targets
    assert src.class_names[0] == "apple" and src.class_names[99] == "worm" and src.class_names[19] == "cattle"
    assert np.bincount(targets).tolist() == [500] * 100
    assert len(make_long_tailed(targets, 100, recipe="ldam", imbalance_ratio=100).train) == 10847


@pytest.mark.slow
def test_ham10000_lesion_grouped_70_10_20_without_decoding():
    path = need("ham10000_200x150.tar.gz")
    cfg = DataConfig(source={"name": "ham10000", "root": path}, cache=False, normalize="none", split={"val": 0.1, "test": 0.2})
    b = build_data(cfg, seed=0)
    assert b.class_names == ["mel", "nv", "bcc", "akiec", "bkl", "df", "vasc"]
    total = b.train_counts + b.val.class_counts() + b.test.class_counts()
    assert total.tolist() == [1113, 6705, 514, 327, 1099, 115, 142]
    lesions = [set(ds.groups.tolist()) for ds in (b.train, b.val, b.test)]
    assert not lesions[0] & lesions[1] and not lesions[0] & lesions[2] and not lesions[1] & lesions[2]
    assert len(lesions[0] | lesions[1] | lesions[2]) == 7470
    sizes = np.array([len(b.train), len(b.val), len(b.test)]) / 10015
    assert np.allclose(sizes, [0.7, 0.1, 0.2], atol=0.01)


@pytest.mark.parametrize("name,shape,counts", [
    ("breastmnist.npz", (1, 28, 28), {"train": [147, 399], "val": [21, 57], "test": [42, 114]}),
    ("pneumoniamnist.npz", (1, 28, 28), {"train": [1214, 3494], "val": [135, 389], "test": [234, 390]}),
    ("retinamnist.npz", (3, 28, 28), {"train": [486, 128, 206, 194, 66], "val": [54, 12, 28, 20, 6],
                                      "test": [174, 46, 92, 68, 20]}),
])
def test_official_medmnist_files(name, shape, counts):
    b = build_data(DataConfig(source={"name": "medmnist", "root": need(name)}), seed=0)
    assert (b.channels, *b.image_size) == shape
    assert b.train_counts.tolist() == counts["train"]
    assert b.val.class_counts().tolist() == counts["val"] and b.test.class_counts().tolist() == counts["test"]
    assert b.split_indices["val"]["split"] == "val"  # the official validation split, not a carved one
