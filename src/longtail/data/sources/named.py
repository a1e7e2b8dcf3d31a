"""Named real datasets with fixed layouts: CIFAR JPEG folders and HAM10000."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...core.errors import DataError
from ...core.registry import DATASETS
from .archive import ensure_extracted, is_tarball
from .base import Source, file_split, item_metadata, require_dir
from .files import contained_paths, read_csv_rows, relative_ids, scan_class_folders

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

# seeds.md 2.9: the ISIC 2018 / MBIT label map of HAM10000 ``dx`` codes.
HAM10000_CLASSES = ["mel", "nv", "bcc", "akiec", "bkl", "df", "vasc"]


def _folder(path: str | Path, cache_dir: str | None, key: str) -> Path:
    p = Path(path)
    if is_tarball(p):
        return ensure_extracted(p, cache_dir)
    return require_dir(p, "dataset folder or archive", key)


def _find_split_root(base: Path) -> Path:
    """The folder that holds ``train/`` (the archive root or its single top folder)."""
    if (base / "train").is_dir():
        return base
    inner = [d for d in base.iterdir() if d.is_dir() and (d / "train").is_dir()]
    if len(inner) == 1:
        return inner[0]
    raise DataError(f"no train/ folder in '{base}'; expected <root>/train/<class>/*.jpg and <root>/test/<class>/*.jpg")


@DATASETS.register("cifar_jpeg", renamed={"path": "root"})
def cifar_jpeg(root: str, cache_dir: str | None = None) -> Source:
    """CIFAR-10/100 as per-class JPEG folders (tar.gz or folder) in the official class order."""
    root = _find_split_root(_folder(root, cache_dir, "root"))
    found = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    if sorted(found) == sorted(CIFAR10_CLASSES):
        names = list(CIFAR10_CLASSES)  # official label order, not alphabetical
    elif len(found) == 100:
        names = found  # CIFAR-100 fine labels are alphabetical (apple=0 ... worm=99)
    else:
        raise DataError(f"'{root / 'train'}' has {len(found)} class folders; expected the 10 CIFAR-10 or 100 CIFAR-100 classes")
    splits = {}
    for s in ("train", "test"):
        if (root / s).is_dir():
            paths, targets, _ = scan_class_folders(root / s, names, (".jpg", ".jpeg", ".png"))
            splits[s] = file_split(paths, targets, names, ids=relative_ids(paths, root), channels=3)
    return Source(names, splits, channels=3, info={"root": str(root)})


@DATASETS.register("ham10000", renamed={"path": "root"})
def ham10000(root: str, metadata: str = "HAM10000_metadata.csv", image_dir: str = "images",
             cache_dir: str | None = None) -> Source:
    """HAM10000 (ISIC 2018 task 3 train): images + metadata CSV, lesion_id kept as group, MBIT class order."""
    root = _folder(root, cache_dir, "root")
    meta = root / metadata
    if not meta.exists():  # a FIFO or a folder there is named as such by read_csv_rows
        raise DataError(f"'{meta}' not found; data.source.root must hold {metadata} (set data.source.metadata)")
    images = require_dir(root / image_dir, "HAM10000 image folder", "image_dir")
    columns, rows = read_csv_rows(meta)
    for col in ("image_id", "dx", "lesion_id"):
        if col not in columns:
            raise DataError(f"'{meta}' has no column '{col}' (columns: {', '.join(columns)}); use the original HAM10000_metadata.csv")
    lookup = {c: i for i, c in enumerate(HAM10000_CLASSES)}
    targets = []
    for n, r in enumerate(rows):
        if r["dx"] not in lookup:
            raise DataError(f"{meta} row {n + 2}: dx '{r['dx']}' is not one of {HAM10000_CLASSES}; fix the metadata")
        targets.append(lookup[r["dx"]])
    ids = [r["image_id"] for r in rows]
    paths = contained_paths(images, [f"{i}.jpg" for i in ids], lambda n: f"'{meta}' row {n + 2}", allow_outside=False)
    groups = np.asarray([r["lesion_id"] for r in rows])
    ds = file_split(paths, np.asarray(targets, dtype=np.int64), HAM10000_CLASSES, ids=ids, groups=groups, channels=3)
    return Source(list(HAM10000_CLASSES), {"all": ds}, channels=3, info={"root": str(root), "metadata": item_metadata(ids, rows, ("image_id", "dx"))})
