"""What a registered source returns, and the checks every source shares.

A source (registered in ``longtail.core.registry.DATASETS``; its constructor kwargs are the keys of
``data.source``) returns a :class:`Source`: class names and the splits it has natively
(``train``/``val``/``test`` or ``all``) as :class:`ImageDataset`\\ s. File sources return lazy
datasets at native size; ``build_data`` re-decodes or caches them with the config's settings.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...core.errors import DataError
from ..dataset import FileImageDataset, ImageDataset
from ..decode import Decoder, irregular, open_regular, probe_channels, shown

SPLIT_NAMES = ("train", "val", "test", "all")
# class indices read from a file make at most this many classes unless there are more labelled items: above any
# real class list (ImageNet-21k has 21,841), below a size whose class names would fill memory (a label 1e9)
MAX_INFERRED_CLASSES = 1_000_000
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test", "testing": "test", "all": "all"}


@dataclass
class Source:
    """Class names + native splits (split name -> ImageDataset) of one data source."""

    class_names: list[str]
    splits: dict[str, ImageDataset]
    channels: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.splits) - set(SPLIT_NAMES)
        if unknown:
            raise ValueError(f"source splits must be among {SPLIT_NAMES}, got {sorted(unknown)}")
        if "all" in self.splits and len(self.splits) > 1:
            raise ValueError("a source has either an 'all' split or train/val/test splits")
        if not any(k in self.splits for k in ("train", "all")):
            raise DataError("the source has no training images (no 'train' split); check data.source")


def item_metadata(ids: Sequence[str], rows: Sequence[dict[str, str]], leave_out: Sequence[str] = ()) -> dict[str, dict[str, str]]:
    """id -> the row's other columns (HAM10000 sex, age, localization, lesion_id; any CSV column): what
    eval.subgroups and eval.aggregate_by read on the evaluation splits."""
    return {i: {k: v for k, v in r.items() if k not in leave_out and k is not None} for i, r in zip(ids, rows)}


def require_file(path: str | Path | None, what: str, key: str) -> Path:
    """``path`` as a Path when it is a regular file; a FIFO or a device is named as such, never "not found"."""
    p = _require(path, what, key, Path.exists, "not found", "an existing file")
    kind = irregular(p)
    if kind is not None:
        raise DataError(f"{what} '{shown(p)}' is {kind}, not a regular file; set data.source.{key} to the file itself")
    return p


def require_dir(path: str | Path | None, what: str, key: str) -> Path:
    return _require(path, what, key, Path.is_dir, "not found or not a folder", "an existing folder")


def _require(path: str | Path | None, what: str, key: str, exists: Callable[[Path], bool], problem: str, wanted: str) -> Path:
    if path is None:
        raise DataError(f"{what} is not set; set data.source.{key}")
    p = Path(path)
    if not exists(p):
        raise DataError(f"{what} '{p}' {problem}; set data.source.{key} to {wanted} (paths are relative to the current directory)")
    return p


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """An annotation file's text. Bytes that are not UTF-8 and NUL bytes (a binary file) are one-line
    errors naming the line; only a regular file is read."""
    with open_regular(path, "annotation file", "fix data.source") as f:
        data = f.read()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        line, column = data.count(b"\n", 0, e.start) + 1, e.start - data.rfind(b"\n", 0, e.start)
        raise DataError(f"'{path}' line {line}, column {column}: byte 0x{data[e.start]:02x} is not UTF-8; save the file as UTF-8") from None
    nul = text.find("\x00")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        raise DataError(f"'{path}' line {line} holds a NUL byte; the file is binary or damaged, not a text annotation file")
    return text


def file_split(
    paths: Sequence[str | os.PathLike[str]],
    targets: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    ids: Sequence[str] | None = None,
    groups: Sequence[Any] | np.ndarray | None = None,
    channels: int | None = None,
) -> FileImageDataset:
    """A lazy dataset of files at native size (``build_data`` re-decodes it with the config)."""
    paths = [str(p) for p in paths]
    if channels is None:
        channels = probe_channels(paths[0]) if paths else 3
    return FileImageDataset(paths, targets, class_names, Decoder(channels=channels), ids=ids, groups=groups)


def integer_label(value: str) -> int | None:
    """``value`` as an exact int when it is an integer literal ('7', ' 7 ', '7.0', '1e9'), else None."""
    s = str(value).strip()
    try:
        return int(s)
    except ValueError:
        pass
    try:
        f = float(s)
    except ValueError:
        return None
    return int(f) if f.is_integer() else None


def numeric_labels(values: Sequence[str]) -> list[int] | None:
    """The values as ints when every one is an integer literal, else None."""
    out = [integer_label(v) for v in values]
    return None if any(v is None for v in out) else out  # type: ignore[return-value]


def class_count(labels: Sequence[int], num_classes: int | None, where: Callable[[int], str], allow_unlabelled: bool = True) -> int:
    """The number of classes of integer class indices (``num_classes``, else the largest + 1), every label
    checked as a Python int first: a label such as 1e9 or a 20-digit number is an error naming it, not a
    billion class names or an int64 overflow. -1 is unlabelled where allowed."""
    if num_classes is None:
        top = max(range(len(labels)), key=labels.__getitem__, default=None)
        if top is None:
            return 0
        if labels[top] >= max(len(labels), MAX_INFERRED_CLASSES):
            raise DataError(f"{where(top)}: label {labels[top]} would make {labels[top] + 1:,} classes (integer labels are class indices 0..C-1) "
                            f"but there are {len(labels):,} labelled items; renumber the labels 0..C-1 or list the classes in data.source.classes")
        num_classes = labels[top] + 1
    lo = -1 if allow_unlabelled else 0
    bad = next((i for i, v in enumerate(labels) if not lo <= v < num_classes), None)
    if bad is not None:
        raise DataError(f"{where(bad)}: label {labels[bad]} is outside the {num_classes} classes 0..{num_classes - 1}; "
                        "fix the label or the class list (data.source.classes / num_classes)")
    return num_classes


def index_labels(
    labels: Sequence[str], classes: Sequence[str] | None, where: str
) -> tuple[np.ndarray, list[str]]:
    """Raw label strings -> (indices, class names); '' means unlabelled (-1).

    Integer labels are class indices (names ``classes`` or '0'..'C-1'); other labels are class
    names, in the order of ``classes`` when given, else sorted.
    """
    present = [str(v).strip() for v in labels]
    given = [i for i, s in enumerate(present) if s != ""]
    as_int = numeric_labels([present[i] for i in given])
    out = np.full(len(present), -1, dtype=np.int64)
    if as_int is not None and given:
        n = class_count(as_int, len(classes) if classes is not None else None, lambda k: f"{where} (item {given[k]})")
        names = [str(c) for c in classes] if classes is not None else [str(i) for i in range(n)]
        out[given] = as_int
        return out, names
    names = [str(c) for c in classes] if classes is not None else sorted({present[i] for i in given})
    lookup = {n: i for i, n in enumerate(names)}
    for i in given:
        if present[i] not in lookup:
            raise DataError(f"{where}: label '{present[i]}' (item {i}) is not in the class list {names[:8]}{'...' if len(names) > 8 else ''}; "
                            "add it to data.source.classes or fix the label")
        out[i] = lookup[present[i]]
    return out, names
