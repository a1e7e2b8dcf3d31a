"""ImageNet-LT and iNaturalist 2018 fixtures in their exact on-disk formats (tiny JPEGs, few classes).

ImageNet-LT (classifier-balancing): ``ImageNet_LT_{train,val,test}.txt`` with ``<path> <label>``
lines; train and val list ImageNet *train* images (``train/<wnid>/<wnid>_<n>.JPEG``), test lists the
ImageNet val set (``val/<wnid>/ILSVRC2012_val_<8 digits>.JPEG``); on disk the images lie in
``ILSVRC2012_img_train/<wnid>/`` and, flat, ``ILSVRC2012_img_val/``.
iNaturalist 2018: ``train2018.json`` / ``val2018.json`` with ``images`` {id, file_name, width,
height, license, rights_holder}, ``annotations`` {id, image_id, category_id} and ``categories`` {id,
name, supercategory, kingdom, ...}; files under ``train_val2018/<supercategory>/<id>/<hash>.jpg``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

#: train images per class: many (> 100), medium (20..100), few (< 20) x 2 with the standard thresholds
TRAIN_COUNTS = (110, 30, 6, 2)
WNIDS = ("n01440764", "n01443537", "n01484850", "n01491361")


def _jpeg(path: Path, rng: np.random.Generator) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(path, quality=90)


def write_imagenet_lt_fixture(root: Path, counts: tuple[int, ...] = TRAIN_COUNTS, per_class_eval: int = 2) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    lines: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    n_val = 0
    for label, (wnid, count) in enumerate(zip(WNIDS, counts)):
        for k in range(count + per_class_eval):  # the first ones train, the rest validation (also train images)
            name = f"{wnid}_{1000 + k}.JPEG"
            _jpeg(root / "ILSVRC2012_img_train" / wnid / name, rng)
            lines["train" if k < count else "val"].append(f"train/{wnid}/{name} {label}")
        for _ in range(per_class_eval):
            n_val += 1
            name = f"ILSVRC2012_val_{n_val:08d}.JPEG"
            _jpeg(root / "ILSVRC2012_img_val" / name, rng)
            lines["test"].append(f"val/{wnid}/{name} {label}")
    files = {}
    for split, rows in lines.items():
        files[split] = root / f"ImageNet_LT_{split}.txt"
        files[split].write_text("\n".join(rows) + "\n")
    return {"root": root, **files}


def write_inat2018_fixture(root: Path, counts: tuple[int, ...] = TRAIN_COUNTS, per_class_val: int = 3) -> dict[str, Path]:
    rng = np.random.default_rng(1)
    supers = ["Plantae", "Insecta", "Aves", "Fungi"]
    categories = [{"id": c, "name": f"Species {c}", "supercategory": supers[c % 4], "kingdom": "Animalia" if c % 4 in (1, 2) else supers[c % 4],
                   "phylum": "p", "class": "c", "order": "o", "family": "f", "genus": "g"} for c in range(len(counts))]
    next_id = 0
    files = {}
    for split, per_class in (("train", list(counts)), ("val", [per_class_val] * len(counts))):
        images, annotations = [], []
        for c, n in enumerate(per_class):
            for _ in range(n):
                digest = hashlib.md5(f"{split}{next_id}".encode()).hexdigest()
                rel = f"train_val2018/{categories[c]['supercategory']}/{c}/{digest}.jpg"
                _jpeg(root / rel, rng)
                images.append({"id": next_id, "file_name": rel, "width": 12, "height": 10, "license": 3, "rights_holder": "x"})
                annotations.append({"id": next_id, "image_id": next_id, "category_id": c})
                next_id += 1
        files[split] = root / f"{split}2018.json"
        files[split].write_text(json.dumps({"info": {"year": 2018}, "images": images, "annotations": annotations,
                                            "categories": categories, "licenses": []}))
    return {"root": root, **files}
