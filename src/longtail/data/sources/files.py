"""Generic on-disk formats: class folders, CSV, list files (``path label``), MBIT JSON."""

from __future__ import annotations

import csv as csvlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from ...registry import DATASETS
from .base import (
    SPLIT_ALIASES,
    Source,
    check_labels,
    file_split,
    index_labels,
    require_dir,
    require_file,
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")


def _images_in(folder: Path, extensions: Sequence[str]) -> list[str]:
    """Image files under ``folder`` (recursive), sorted; plain strings because pathlib is slow at 50k files."""
    exts = tuple({e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions})
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        out += [os.path.join(dirpath, f) for f in filenames if not f.startswith(".") and f.lower().endswith(exts)]
    return sorted(out)


def scan_class_folders(root: Path, classes: Sequence[str] | None, extensions: Sequence[str]) -> tuple[list[str], np.ndarray, list[str]]:
    """Files of ``root/<class>/**`` -> (paths, targets, class names)."""
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    names = [str(c) for c in classes] if classes is not None else found
    missing = [c for c in names if c not in found]
    if missing:
        raise DataError(f"class folder '{root / missing[0]}' not found; create it or remove '{missing[0]}' from data.source.classes")
    if not names:
        raise DataError(f"'{root}' has no class sub-folders; expected root/<class name>/<image files>")
    paths: list[str] = []
    targets: list[int] = []
    for i, c in enumerate(names):
        files = _images_in(root / c, extensions)
        paths += files
        targets += [i] * len(files)
    if not paths:
        raise DataError(f"no image files under '{root}' (extensions {', '.join(extensions)}); check data.source.root")
    return paths, np.asarray(targets, dtype=np.int64), names


@DATASETS.register("image_folder")
def image_folder(root: str, classes: Sequence[str] | None = None, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> Source:
    """Folder per class (root/<class>/*.jpg), or root/{train,val,test}/<class>/; class order sorted or `classes`."""
    base = require_dir(root, "image folder", "root")
    subdirs = {d.name for d in base.iterdir() if d.is_dir()}
    split_dirs = [s for s in ("train", "val", "test") if s in subdirs]
    if "train" in split_dirs and subdirs <= {"train", "val", "test"}:
        names = [str(c) for c in classes] if classes is not None else sorted(
            d.name for d in (base / "train").iterdir() if d.is_dir() and not d.name.startswith("."))
        splits = {}
        for s in split_dirs:
            paths, targets, _ = scan_class_folders(base / s, names, extensions)
            splits[s] = file_split(paths, targets, names, ids=relative_ids(paths, base))
        return Source(names, splits)
    paths, targets, names = scan_class_folders(base, classes, extensions)
    return Source(names, {"all": file_split(paths, targets, names, ids=relative_ids(paths, base))})


def relative_ids(paths: Sequence[str], base: Path) -> list[str]:
    """Paths relative to ``base`` (string slicing: every path starts with it)."""
    prefix = len(str(base).rstrip(os.sep)) + 1
    return [p[prefix:] for p in paths]


def read_csv_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csvlib.DictReader(f)
        if not reader.fieldnames:
            raise DataError(f"'{path}' is empty; expected a header row")
        return [c.strip() for c in reader.fieldnames], [{k.strip(): (v or "").strip() for k, v in r.items() if k} for r in reader]


def require_columns(path: Path, columns: list[str], wanted: dict[str, str | None]) -> None:
    for key, col in wanted.items():
        if col is not None and col not in columns:
            raise DataError(f"'{path}' has no column '{col}' (columns: {', '.join(columns)}); set data.source.{key}")


@DATASETS.register("csv")
def csv_source(
    file: str,
    image_root: str | None = None,
    path_column: str = "image",
    label_column: str = "label",
    group_column: str | None = None,
    split_column: str | None = None,
    classes: Sequence[str] | None = None,
    extension: str = "",
) -> Source:
    """CSV with an image path and a label column (optional group and split columns)."""
    path = require_file(file, "CSV file", "file")
    root = require_dir(image_root, "image root", "image_root") if image_root is not None else Path(".")
    columns, rows = read_csv_rows(path)
    require_columns(path, columns, {"path_column": path_column, "label_column": label_column,
                                    "group_column": group_column, "split_column": split_column})
    if not rows:
        raise DataError(f"'{path}' has a header but no rows")
    targets, names = index_labels([r[label_column] for r in rows], classes, f"{path} column '{label_column}'")
    paths = [root / (r[path_column] + extension) for r in rows]
    ids = [r[path_column] for r in rows]
    groups = np.asarray([r[group_column] for r in rows]) if group_column else None
    if split_column is None:
        _require_labelled(targets, path)
        return Source(names, {"all": file_split(paths, targets, names, ids=ids, groups=groups)})
    which = []
    for i, r in enumerate(rows):
        s = SPLIT_ALIASES.get(r[split_column].lower())
        if s is None or s == "all":
            raise DataError(f"{path} row {i + 2}: split '{r[split_column]}' is not train/val/test; fix column '{split_column}'")
        which.append(s)
    which_arr = np.asarray(which)
    splits = {}
    for s in ("train", "val", "test"):
        idx = np.flatnonzero(which_arr == s)
        if len(idx):
            if s != "test":
                _require_labelled(targets[idx], path)
            splits[s] = file_split([paths[i] for i in idx], targets[idx], names, ids=[ids[i] for i in idx],
                                   groups=None if groups is None else groups[idx])
    return Source(names, splits)


def _require_labelled(targets: np.ndarray, where: Path | str) -> None:
    bad = np.flatnonzero(targets < 0)
    if len(bad):
        raise DataError(f"{where}: item {int(bad[0])} has no label; only a test split may lack labels, and then all of them")


def read_list_file(path: Path) -> tuple[list[str], list[str]]:
    """``relative/path label`` lines (label optional) -> (paths, raw labels)."""
    rel, labels = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) == 2 and _is_int(parts[1]):
            rel.append(parts[0])
            labels.append(parts[1])
        else:
            rel.append(line)
            labels.append("")
    if not rel:
        raise DataError(f"list file '{path}' has no entries; expected lines 'relative/path.jpg <label>'")
    return rel, labels


def _is_int(s: str) -> bool:
    try:
        int(s)
        return True
    except ValueError:
        return False


@DATASETS.register("list_file")
def list_file(
    train: str,
    image_root: str,
    val: str | None = None,
    test: str | None = None,
    classes: Sequence[str] | None = None,
    num_classes: int | None = None,
) -> Source:
    """List files of 'relative/path label' lines (SPBL SD-198/260, ImageNet-LT, iNaturalist, Places-LT)."""
    root = require_dir(image_root, "image root", "image_root")
    files = {"train": train, "val": val, "test": test}
    raw = {}
    for s, f in files.items():
        if f is not None:
            raw[s] = read_list_file(require_file(f, f"{s} list file", s))
    labelled = [int(v) for s in raw for v in raw[s][1] if v != ""]
    n = len(classes) if classes is not None else num_classes if num_classes is not None else max(labelled) + 1
    if classes is not None and num_classes is not None and len(classes) != num_classes:
        raise DataError(f"data.source.classes has {len(classes)} names but num_classes is {num_classes}; make them agree")
    names = [str(c) for c in classes] if classes is not None else [str(i) for i in range(n)]
    splits = {}
    for s, (rel, labels) in raw.items():
        targets = np.asarray([int(v) if v != "" else -1 for v in labels], dtype=np.int64)
        check_labels(targets, n, f"{files[s]}")
        if s != "test":
            _require_labelled(targets, files[s])
        splits[s] = file_split([root / r for r in rel], targets, names, ids=rel)
    return Source(names, splits)


def read_mbit_json(path: Path, image_key: str) -> tuple[list[str], list[int], list[str], int | None, list[str] | None]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"'{path}' is not valid JSON (line {e.lineno}); fix the file") from None
    anns = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(anns, list):
        raise DataError(f"'{path}' has no 'annotations' list; expected the MBIT schema {{annotations: [...], num_classes: K}}")
    rel, labels, ids = [], [], []
    for i, a in enumerate(anns):
        if image_key not in a:
            raise DataError(f"'{path}' annotation {i} has no '{image_key}'; set data.source.image_key")
        rel.append(str(a[image_key]))
        labels.append(int(a["category_id"]) if a.get("category_id") is not None else -1)
        ids.append(str(a.get("image_id", a[image_key])))
    num = data.get("num_classes")
    names = data.get("class_names")
    return rel, labels, ids, (int(num) if num is not None else None), names


@DATASETS.register("mbit_json")
def mbit_json(
    train: str,
    root: str = "",
    val: str | None = None,
    test: str | None = None,
    classes: Sequence[str] | None = None,
    image_key: str = "derm_path",
) -> Source:
    """MBIT annotation JSON ({annotations: [{image_id, category_id, derm_path}], num_classes}); test may be unlabelled."""
    base = require_dir(root, "image root", "root") if root else Path(".")
    files = {"train": train, "val": val, "test": test}
    raw: dict[str, Any] = {}
    for s, f in files.items():
        if f is not None:
            raw[s] = read_mbit_json(require_file(f, f"{s} JSON", s), image_key)
    labelled_nums = {files[s]: raw[s][3] for s in raw if raw[s][3] is not None and any(v >= 0 for v in raw[s][1])}
    if len(set(labelled_nums.values())) > 1:
        raise DataError(f"num_classes differs between the JSON files {labelled_nums}; regenerate them with one class list")
    file_names = next((raw[s][4] for s in raw if raw[s][4]), None)
    if classes is not None:
        names = [str(c) for c in classes]
    elif file_names:
        names = [str(c) for c in file_names]
    else:
        num = next(iter(labelled_nums.values()), None)
        num = num if num is not None else max(v for s in raw for v in raw[s][1]) + 1
        names = [str(i) for i in range(num)]
    for f, num in labelled_nums.items():
        if num != len(names):
            raise DataError(f"'{f}' says num_classes={num} but the class list has {len(names)} names; fix data.source.classes or the JSON")
    splits = {}
    for s, (rel, labels, ids, _, _) in raw.items():
        targets = np.asarray(labels, dtype=np.int64)
        check_labels(targets, len(names), files[s])
        if s != "test" or (targets >= 0).any():  # a test split is labelled throughout or not at all
            _require_labelled(targets, files[s])
        splits[s] = file_split([base / r for r in rel], targets, names, ids=ids)
    return Source(names, splits)
