"""Generic on-disk formats: class folders, CSV, list files (``path label``), MBIT JSON."""

from __future__ import annotations

import csv as csvlib
import io
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...core.errors import DataError
from ...core.registry import DATASETS
from ..decode import irregular, shown
from .base import MAX_INFERRED_CLASSES, SPLIT_ALIASES, Source, class_count, file_split, index_labels, integer_label, item_metadata, read_text, require_dir, require_file

log = logging.getLogger(__name__)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")


def _images_in(folder: Path, extensions: Sequence[str]) -> list[str]:
    """Image files under ``folder`` (recursive), sorted; plain strings because pathlib is slow at 50k files.

    Entries that are not regular files (a FIFO, a socket, a device: reading one would hang or never
    end) are left out, said in one warning."""
    exts = tuple({e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions})
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        out += [os.path.join(dirpath, f) for f in filenames if not f.startswith(".") and f.lower().endswith(exts)]
    return sorted(regular_only(out, folder))


def regular_only(paths: list[str], where: str | Path) -> list[str]:
    """``paths`` less those that exist but are not regular files, named in one WARNING line."""
    odd = [(p, kind) for p in paths if (kind := irregular(p)) is not None]
    if odd:
        named = ", ".join(f"'{shown(p)}' ({kind})" for p, kind in odd[:3]) + (f" and {len(odd) - 3} more" if len(odd) > 3 else "")
        log.warning("skipped %d entr%s under '%s' that %s not a regular file: %s; only regular files are read as images",
                    len(odd), "y" if len(odd) == 1 else "ies", shown(where), "is" if len(odd) == 1 else "are", named)
        skip = {p for p, _ in odd}
        paths = [p for p in paths if p not in skip]
    return paths


def scan_class_folders(root: Path, classes: Sequence[str] | None, extensions: Sequence[str]) -> tuple[list[str], np.ndarray, list[str]]:
    """Files of ``root/<class>/**`` -> (paths, targets, class names)."""
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    names = [str(c) for c in classes] if classes is not None else found
    for c in names:
        if not utf8(c):
            raise DataError(f"class folder '{shown(root / c)}' has a name that is not UTF-8; rename the folder (class names appear in every result)")
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
    """Paths relative to ``base`` (string slicing: every path starts with it), as printable UTF-8: the
    bytes of a file name that are not UTF-8 are written ``\\xff`` (the path itself still opens the file)."""
    prefix = len(str(base).rstrip(os.sep)) + 1
    return [p[prefix:] if utf8(p) else shown(p[prefix:]) for p in paths]


def utf8(name: str) -> bool:
    """Whether a name read from the file system is valid UTF-8 (other bytes arrive as lone surrogates)."""
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def contained_paths(root: Path, rel: Sequence[str], where: Callable[[int], str], allow_outside: bool) -> list[Path]:
    """``root / r`` for each annotation path, refusing any that leaves ``root`` (``..``, absolute paths).

    The check is on the written path (symlinks inside the root are followed as usual), and happens
    before a file is opened, so the error says nothing about whether an outside file exists.
    """
    if allow_outside:
        return [root / r for r in rel]
    base = os.path.abspath(root)
    prefix = base.rstrip(os.sep) + os.sep
    out = []
    for i, r in enumerate(rel):
        full = os.path.normpath(os.path.join(base, r))
        if os.path.isabs(r) or not full.startswith(prefix):
            raise DataError(
                f"{where(i)}: path '{r}' is outside the data root '{root}'; fix the path "
                "or set data.source.allow_outside_root: true if it is meant to be read"
            )
        out.append(root / r)
    return out


def check_duplicates(ids: Sequence[str], labels: Sequence[Any], where: Callable[[int], str], dedupe: bool) -> list[int]:
    """Rows to keep: a repeated image id is an error (it can land in train and validation, a leak);
    ``dedupe`` keeps the first of identical repeats. Repeats with another label are always an error."""
    first: dict[str, int] = {}
    keep = []
    for i, (key, label) in enumerate(zip(ids, labels)):
        j = first.get(key)
        if j is None:
            first[key] = i
            keep.append(i)
        elif labels[j] != label:
            raise DataError(f"{where(i)}: image '{key}' repeats {where(j)} with another label ({label!r} vs {labels[j]!r}); keep one row")
        elif not dedupe:
            raise DataError(
                f"{where(i)}: image '{key}' repeats {where(j)} (a repeated image can land in both train and validation); "
                "remove the repeat or set data.source.dedupe: true"
            )
    return keep


def check_disjoint(train_file: str, train_ids: Sequence[str], others: dict[str, Sequence[str]]) -> None:
    """An image id of the train file that is also in a val/test file is a leak: an error.

    (val and test may overlap: some published layouts use one list for both.)
    """
    train = set(train_ids)
    for f, ids in others.items():
        both = next((key for key in ids if key in train), None)
        if both is not None:
            raise DataError(f"image '{both}' is in both '{train_file}' and '{f}' (a train/evaluation leak); remove it from one")


def read_csv_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """(columns, rows) of a CSV file with a header row; malformed input is a one-line error naming the line."""
    reader = csvlib.DictReader(io.StringIO(read_text(path, "utf-8-sig"), newline=""))
    try:
        if not reader.fieldnames:
            raise DataError(f"'{path}' is empty; expected a header row")
        return [c.strip() for c in reader.fieldnames], [{k.strip(): (v or "").strip() for k, v in r.items() if k} for r in reader]
    except csvlib.Error as e:  # e.g. 'field larger than field limit (131072)': often an unclosed quote (the DictReader's own line_num lags a row)
        raise DataError(f"'{path}' line {reader.reader.line_num}: {e}; fix that line (an unclosed quote runs one field on through the file)") from None


def require_columns(path: Path, columns: list[str], wanted: dict[str, str | None]) -> None:
    for key, col in wanted.items():
        if col is not None and col not in columns:
            raise DataError(f"'{path}' has no column '{col}' (columns: {', '.join(columns)}); set data.source.{key}")


@DATASETS.register("csv", renamed={"image_root": "root"})
def csv_source(
    file: str,
    root: str | None = None,
    path_column: str = "image",
    label_column: str = "label",
    group_column: str | None = None,
    split_column: str | None = None,
    classes: Sequence[str] | None = None,
    extension: str = "",
    allow_outside_root: bool = False,
    dedupe: bool = False,
) -> Source:
    """CSV with an image path and a label column (optional group and split columns); paths relative to ``root``."""
    path = require_file(file, "CSV file", "file")
    base = require_dir(root, "image root", "root") if root is not None else Path(".")
    columns, rows = read_csv_rows(path)
    require_columns(path, columns, {"path_column": path_column, "label_column": label_column,
                                    "group_column": group_column, "split_column": split_column})
    if not rows:
        raise DataError(f"'{path}' has a header but no rows")
    row = lambda i: f"'{path}' row {i + 2}"  # noqa: E731  (row 1 is the header)
    empty = next((i for i, r in enumerate(rows) if not r[path_column]), None)
    if empty is not None:
        raise DataError(f"{row(empty)}: column '{path_column}' is empty; give every row an image path")
    keys = [f"{r[label_column]}" + (f" in split {r[split_column]}" if split_column else "") for r in rows]
    rows = [rows[i] for i in check_duplicates([r[path_column] for r in rows], keys, row, dedupe)]
    targets, names = index_labels([r[label_column] for r in rows], classes, f"{path} column '{label_column}'")
    paths = contained_paths(base, [r[path_column] + extension for r in rows], row, allow_outside_root)
    ids = [r[path_column] for r in rows]
    groups = np.asarray([r[group_column] for r in rows]) if group_column else None
    info = {"metadata": item_metadata(ids, rows, (path_column, label_column))}
    if split_column is None:
        _require_labelled(targets, path)
        return Source(names, {"all": file_split(paths, targets, names, ids=ids, groups=groups)}, info=info)
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
    return Source(names, splits, info=info)


def _require_labelled(targets: np.ndarray, where: Path | str) -> None:
    bad = np.flatnonzero(targets < 0)
    if len(bad):
        raise DataError(f"{where}: item {int(bad[0])} has no label; only a test split may lack labels, and then all of them")


def read_list_file(path: Path, dedupe: bool = False) -> tuple[list[str], list[str], list[int]]:
    """``relative/path label`` lines (label optional) -> (paths, raw labels, line numbers)."""
    rel, labels, lines = [], [], []
    for n, line in enumerate(read_text(path).splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(maxsplit=1)
        label = integer_label(parts[1]) if len(parts) == 2 else None
        if label is not None:
            rel.append(parts[0])
            labels.append(str(label))
        elif len(parts) == 2 and _number(parts[1]):
            raise DataError(f"'{path}' line {n}: label '{parts[1]}' is not an integer class index; write 'relative/path.jpg <class index>'")
        else:
            rel.append(line)
            labels.append("")
        lines.append(n)
    if not rel:
        raise DataError(f"list file '{path}' has no entries; expected lines 'relative/path.jpg <label>'")
    keep = check_duplicates(rel, labels, lambda i: f"'{path}' line {lines[i]}", dedupe)
    return [rel[i] for i in keep], [labels[i] for i in keep], [lines[i] for i in keep]


def _number(s: str) -> bool:
    """Whether ``s`` reads as a number ('2.5', 'nan'): a label, not the end of a path."""
    try:
        float(s)
        return True
    except ValueError:
        return False


@DATASETS.register("list_file", renamed={"image_root": "root"})
def list_file(
    train: str,
    root: str,
    val: str | None = None,
    test: str | None = None,
    classes: Sequence[str] | None = None,
    num_classes: int | None = None,
    allow_outside_root: bool = False,
    dedupe: bool = False,
    rewrite: Sequence[Sequence[str]] = (),
) -> Source:
    """List files of 'relative/path label' lines (SPBL SD-198/260, ImageNet-LT, iNaturalist, Places-LT).

    ``rewrite``: [pattern, replacement] regular-expression pairs mapping a listed path to where the
    image lies under ``root``; the first pattern that matches applies (ImageNet-LT's loader
    reads ``train/<wnid>/<f>`` from ``ILSVRC2012_img_train/<wnid>/<f>`` and ``val/<wnid>/<f>`` from
    ``ILSVRC2012_img_val/<f>``). Image ids stay the listed paths.
    """
    base = require_dir(root, "image root", "root")
    rules = compile_rewrites(rewrite)
    files = {"train": train, "val": val, "test": test}
    raw = {}
    for s, f in files.items():
        if f is not None:
            raw[s] = read_list_file(require_file(f, f"{s} list file", s), dedupe)
    check_disjoint(str(train), raw["train"][0], {str(files[s]): raw[s][0] for s in raw if s != "train" and files[s] != train})
    if classes is not None and num_classes is not None and len(classes) != num_classes:
        raise DataError(f"data.source.classes has {len(classes)} names but num_classes is {num_classes}; make them agree")
    labelled = [(files[s], line, int(v)) for s in raw for v, line in zip(raw[s][1], raw[s][2]) if v != ""]
    n = class_count([v for _, _, v in labelled], len(classes) if classes is not None else num_classes,
                    lambda k: f"'{labelled[k][0]}' line {labelled[k][1]}")
    names = [str(c) for c in classes] if classes is not None else [str(i) for i in range(n)]
    splits = {}
    for s, (rel, labels, lines) in raw.items():
        where = lambda i, f=files[s], lines=lines: f"'{f}' line {lines[i]}"  # noqa: E731
        unlabelled = next((i for i, v in enumerate(labels) if v == ""), None)
        if s != "test" and unlabelled is not None:
            raise DataError(f"{where(unlabelled)}: '{rel[unlabelled]}' has no label; write 'relative/path.jpg <class index>' (only a test list may lack labels)")
        targets = np.asarray([int(v) if v != "" else -1 for v in labels], dtype=np.int64)
        if s != "test":
            _require_labelled(targets, files[s])
        located = [apply_rewrites(rules, r) for r in rel] if rules else rel
        splits[s] = file_split(contained_paths(base, located, where, allow_outside_root), targets, names, ids=rel)
    return Source(names, splits)


def compile_rewrites(rewrite: Sequence[Sequence[str]]) -> list[tuple[re.Pattern[str], str]]:
    """``data.source.rewrite`` as compiled (pattern, replacement) pairs, with one-line errors."""
    rules = []
    for i, rule in enumerate(rewrite):
        if isinstance(rule, str) or len(rule) != 2:
            raise DataError(f"data.source.rewrite entry {i} is {rule!r}; write [pattern, replacement], e.g. ['^train/', 'ILSVRC2012_img_train/']")
        try:
            rules.append((re.compile(str(rule[0])), str(rule[1])))
        except re.error as e:
            raise DataError(f"data.source.rewrite entry {i}: pattern {rule[0]!r} is not a regular expression ({e}); fix it") from None
    return rules


def apply_rewrites(rules: list[tuple[re.Pattern[str], str]], path: str) -> str:
    for pattern, replacement in rules:
        if pattern.search(path):
            return pattern.sub(replacement, path, count=1)
    return path


def read_json_file(path: Path) -> Any:
    """A JSON file's content; invalid JSON is a one-line error naming the file and line."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(f"'{path}' is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); fix the file") from None
    except RecursionError:
        raise DataError(f"'{path}' is not an annotation file: its JSON is nested too deeply to read; fix the file") from None


def json_items(data: Any, key: str, path: Path, schema: str, required: bool = True) -> list[dict[str, Any]]:
    """``data[key]``: a list of JSON objects (absent: empty unless ``required``); a one-line error naming the first item that is not."""
    items = data.get(key) if isinstance(data, dict) else None
    if items is None and not required and isinstance(data, dict):
        return []
    if not isinstance(items, list):
        raise DataError(f"'{path}' has no '{key}' list; expected the {schema} schema")
    bad = next((i for i, item in enumerate(items) if not isinstance(item, dict)), None)
    if bad is not None:
        raise DataError(f"'{path}' {key} item {bad} is {json.dumps(items[bad])[:40]}, not an object; expected the {schema} schema")
    return items


def json_int(value: Any, where: str) -> int:
    """An integer of an annotation file (a JSON number, or a string holding one); a one-line error otherwise."""
    number = integer_label(str(value)) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else None
    if number is None:
        raise DataError(f"{where} is {json.dumps(value)[:40]}, not an integer; fix the JSON")
    return number


def json_id(value: Any, where: str) -> int | str:
    """An image id of an annotation file: a JSON number or string (a list or object cannot be matched)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise DataError(f"{where} is {json.dumps(value)[:40]}, not a number or a string; fix the JSON")
    return value


COCO_SCHEMA = "iNaturalist schema {images, annotations, categories}"


def read_coco_json(path: Path) -> tuple[list[str], list[int], list[str], dict[int, str]]:
    """iNaturalist / COCO-style classification JSON -> (file names, category ids (-1: none), image ids, categories)."""
    data = read_json_file(path)
    images = json_items(data, "images", path, COCO_SCHEMA)
    categories = {}
    for i, c in enumerate(json_items(data, "categories", path, COCO_SCHEMA, required=False)):
        if "id" not in c:
            raise DataError(f"'{path}' category {i} has no 'id'; expected {{id, name}}")
        categories[json_int(c["id"], f"'{path}' category {i}: id")] = str(c.get("name", c["id"]))
    label: dict[Any, int] = {}
    for i, a in enumerate(json_items(data, "annotations", path, COCO_SCHEMA, required=False)):
        if "image_id" not in a or "category_id" not in a:
            raise DataError(f"'{path}' annotation {i} lacks image_id or category_id; expected {{image_id, category_id}}")
        image, category = json_id(a["image_id"], f"'{path}' annotation {i}: image_id"), json_int(a["category_id"], f"'{path}' annotation {i}: category_id")
        if image in label and label[image] != category:
            raise DataError(f"'{path}': image {image} has two categories ({label[image]}, {category}); keep one annotation")
        label[image] = category
    files, cats, ids = [], [], []
    for i, im in enumerate(images):
        if "file_name" not in im or "id" not in im:
            raise DataError(f"'{path}' image {i} lacks file_name or id; expected {{id, file_name}}")
        image = json_id(im["id"], f"'{path}' image {i}: id")
        files.append(str(im["file_name"]))
        cats.append(label.get(image, -1))
        ids.append(str(image))
    return files, cats, ids, categories


@DATASETS.register("inat_json")
def inat_json(
    train: str,
    root: str,
    val: str | None = None,
    test: str | None = None,
    allow_outside_root: bool = False,
) -> Source:
    """iNaturalist 2017/2018/2019 (COCO-style) JSON: images {id, file_name}, annotations {image_id,
    category_id}, categories {id, name}. Classes are the categories sorted by id (iNat 2018: ids
    0..8141 = class indices); an image without annotation is unlabelled (allowed in test only)."""
    base = require_dir(root, "image root", "root")
    files = {"train": train, "val": val, "test": test}
    raw = {s: read_coco_json(require_file(f, f"{s} JSON", s)) for s, f in files.items() if f is not None}
    categories: dict[int, str] = {}
    for s, (_, _, _, cats) in raw.items():
        for k, name in cats.items():
            if categories.setdefault(k, name) != name:
                raise DataError(f"category {k} is '{categories[k]}' in one JSON file and '{name}' in '{files[s]}'; use files of one release")
    if not categories:
        raise DataError(f"'{train}' has no 'categories'; expected the iNaturalist schema {{images, annotations, categories}}")
    ordered = sorted(categories)
    index = {k: i for i, k in enumerate(ordered)}
    names = [categories[k] for k in ordered]
    check_disjoint(str(train), raw["train"][2], {str(files[s]): raw[s][2] for s in raw if s != "train" and files[s] != train})
    splits = {}
    for s, (rel, cats, ids, _) in raw.items():
        unknown = next((c for c in cats if c != -1 and c not in index), None)
        if unknown is not None:
            raise DataError(f"'{files[s]}': category_id {unknown} is not among the categories; use the JSON files of one release")
        targets = np.asarray([index[c] if c != -1 else -1 for c in cats], dtype=np.int64)
        if s != "test" or (targets >= 0).any():
            _require_labelled(targets, files[s])
        where = lambda i, f=files[s]: f"'{f}' image {i}"  # noqa: E731
        splits[s] = file_split(contained_paths(base, rel, where, allow_outside_root), targets, names, ids=ids)
    return Source(names, splits)


def read_mbit_json(path: Path, image_key: str) -> tuple[list[str], list[int], list[str], int | None, list[str] | None]:
    data = read_json_file(path)
    rel, labels, ids = [], [], []
    for i, a in enumerate(json_items(data, "annotations", path, "MBIT schema {annotations: [...], num_classes: K}")):
        if image_key not in a:
            raise DataError(f"'{path}' annotation {i} has no '{image_key}'; set data.source.image_key")
        rel.append(str(a[image_key]))
        labels.append(json_int(a["category_id"], f"'{path}' annotation {i}: category_id") if a.get("category_id") is not None else -1)
        ids.append(str(json_id(a.get("image_id", a[image_key]), f"'{path}' annotation {i}: image_id")))
    num = data.get("num_classes")
    names = data.get("class_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, (str, int)) for n in names)):
        raise DataError(f"'{path}': class_names is {json.dumps(names)[:40]}, not a list of names; fix the JSON")
    return rel, labels, ids, (json_int(num, f"'{path}': num_classes") if num is not None else None), names


@DATASETS.register("mbit_json")
def mbit_json(
    train: str,
    root: str = "",
    val: str | None = None,
    test: str | None = None,
    classes: Sequence[str] | None = None,
    image_key: str = "derm_path",
    allow_outside_root: bool = False,
    dedupe: bool = False,
) -> Source:
    """MBIT annotation JSON ({annotations: [{image_id, category_id, derm_path}], num_classes}); test may be unlabelled."""
    base = require_dir(root, "image root", "root") if root else Path(".")
    files = {"train": train, "val": val, "test": test}
    raw: dict[str, Any] = {}
    for s, f in files.items():
        if f is not None:
            rel, labels, ids, num, file_names = read_mbit_json(require_file(f, f"{s} JSON", s), image_key)
            keep = check_duplicates(ids, labels, lambda i, f=f: f"'{f}' annotation {i}", dedupe)
            raw[s] = ([rel[i] for i in keep], [labels[i] for i in keep], [ids[i] for i in keep], num, file_names, keep)
    check_disjoint(str(train), raw["train"][2], {str(files[s]): raw[s][2] for s in raw if s != "train" and files[s] != train})
    labelled_nums = {files[s]: raw[s][3] for s in raw if raw[s][3] is not None and any(v >= 0 for v in raw[s][1])}
    if len(set(labelled_nums.values())) > 1:
        raise DataError(f"num_classes differs between the JSON files {labelled_nums}; regenerate them with one class list")
    file_names = next((raw[s][4] for s in raw if raw[s][4]), None)
    if classes is not None:
        names = [str(c) for c in classes]
    elif file_names:
        names = [str(c) for c in file_names]
    else:
        flat = [(files[s], raw[s][5][i], v) for s in raw for i, v in enumerate(raw[s][1])]
        where_flat = lambda k: f"'{flat[k][0]}' annotation {flat[k][1]}"  # noqa: E731
        num = next(iter(labelled_nums.values()), None)
        if num is not None and num > max(len(flat), MAX_INFERRED_CLASSES):  # a hostile num_classes must not build a billion names
            raise DataError(f"'{next(iter(labelled_nums))}' says num_classes={num:,} but the files hold {len(flat):,} annotations; fix num_classes in the JSON")
        num = num if num is not None else class_count([v for _, _, v in flat], None, where_flat)
        names = [str(i) for i in range(num)]
    for f, num in labelled_nums.items():
        if num != len(names):
            raise DataError(f"'{f}' says num_classes={num} but the class list has {len(names)} names; fix data.source.classes or the JSON")
    splits = {}
    for s, (rel, labels, ids, _, _, kept) in raw.items():
        where = lambda i, f=files[s], kept=kept: f"'{f}' annotation {kept[i]}"  # noqa: E731
        class_count(labels, len(names), where)
        targets = np.asarray(labels, dtype=np.int64)
        if s != "test" or (targets >= 0).any():  # a test split is labelled throughout or not at all
            _require_labelled(targets, files[s])
        splits[s] = file_split(contained_paths(base, rel, where, allow_outside_root), targets, names, ids=ids)
    return Source(names, splits)
