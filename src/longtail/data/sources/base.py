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
from ..decode import Decoder, probe_channels

SPLIT_NAMES = ("train", "val", "test", "all")
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


def require_file(path: str | Path | None, what: str, key: str) -> Path:
    return _require(path, what, key, Path.is_file, "not found", "an existing file")


def require_dir(path: str | Path | None, what: str, key: str) -> Path:
    return _require(path, what, key, Path.is_dir, "not found or not a folder", "an existing folder")


def _require(path: str | Path | None, what: str, key: str, exists: Callable[[Path], bool], problem: str, wanted: str) -> Path:
    if path is None:
        raise DataError(f"{what} is not set; set data.source.{key}")
    p = Path(path)
    if not exists(p):
        raise DataError(f"{what} '{p}' {problem}; set data.source.{key} to {wanted} (paths are relative to the current directory)")
    return p


def check_labels(targets: np.ndarray, num_classes: int, where: str, allow_unlabelled: bool = True) -> None:
    """Every label is in 0..C-1 (or -1 where unlabelled items are allowed)."""
    lo = -1 if allow_unlabelled else 0
    bad = np.flatnonzero((targets < lo) | (targets >= num_classes))
    if len(bad):
        raise DataError(
            f"{where}: label {int(targets[bad[0]])} (item {int(bad[0])}) is outside the {num_classes} classes 0..{num_classes - 1}; "
            "fix the label or the class list (data.source.classes / num_classes)"
        )


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


def numeric_labels(values: Sequence[str]) -> list[int] | None:
    """The values as ints when every one is an integer literal, else None."""
    out = []
    for v in values:
        s = str(v).strip()
        try:
            f = float(s)
        except ValueError:
            return None
        if not f.is_integer():
            return None
        out.append(int(f))
    return out


def index_labels(
    labels: Sequence[str], classes: Sequence[str] | None, where: str
) -> tuple[np.ndarray, list[str]]:
    """Raw label strings -> (indices, class names); '' means unlabelled (-1).

    Integer labels are class indices (names ``classes`` or '0'..'C-1'); other labels are class
    names, in the order of ``classes`` when given, else sorted.
    """
    present = [str(v).strip() for v in labels]
    given = [s for s in present if s != ""]
    as_int = numeric_labels(given)
    if as_int is not None and given:
        names = [str(c) for c in classes] if classes is not None else [str(i) for i in range(max(as_int) + 1)]
        out = np.full(len(present), -1, dtype=np.int64)
        it = iter(as_int)
        for i, s in enumerate(present):
            if s != "":
                out[i] = next(it)
        check_labels(out, len(names), where)
        return out, names
    names = [str(c) for c in classes] if classes is not None else sorted(set(given))
    lookup = {n: i for i, n in enumerate(names)}
    out = np.full(len(present), -1, dtype=np.int64)
    for i, s in enumerate(present):
        if s == "":
            continue
        if s not in lookup:
            raise DataError(f"{where}: label '{s}' (item {i}) is not in the class list {names[:8]}{'...' if len(names) > 8 else ''}; add it to data.source.classes or fix the label")
        out[i] = lookup[s]
    return out, names
