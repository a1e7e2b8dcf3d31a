"""``data.classes``: train on a subset of a source's classes, or on groups of them.

``keep: [mel, nv]`` keeps two classes (in that order) and drops the images of every other one;
``merge: {malignant: [mel, bcc, akiec], benign: [nv, bkl, df, vasc]}`` makes one class of each group
(in the order written) and drops the classes no group names. Either way the mapping is applied to
every native split before anything is decoded, split or made long-tailed, so the dropped images cost
nothing and the splits are carved from the images that remain. Unlabelled test images (-1) stay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..core.errors import ConfigError
from .dataset import ImageDataset
from .sources.base import Source

if TYPE_CHECKING:
    from ..core.schema import ClassesConfig


def class_groups(cfg: "ClassesConfig") -> dict[str, list[str]]:
    """New class name -> the source classes it is made of (``keep`` is a group of one per class)."""
    if cfg.keep is not None:
        return {name: [name] for name in cfg.keep}
    assert cfg.merge is not None
    return {new: list(old) for new, old in cfg.merge.items()}


def label_map(source_names: list[str], groups: dict[str, list[str]]) -> np.ndarray:
    """Source label -> new label (-2 = dropped); one-line errors for unknown or repeated class names."""
    mapping = np.full(len(source_names), -2, dtype=np.int64)
    for new, (name, members) in enumerate(groups.items()):
        for old in members:
            if old not in source_names:
                raise ConfigError(f"data.classes: '{old}' is not a class of this source; its classes are: {', '.join(source_names)}")
            if mapping[source_names.index(old)] != -2:
                raise ConfigError(f"data.classes: class '{old}' is named twice; give each source class to one group only")
            mapping[source_names.index(old)] = new
    return mapping


def relabel(ds: ImageDataset, mapping: np.ndarray, names: list[str]) -> ImageDataset:
    """The items of ``ds`` whose class is kept (and every unlabelled one), with the new labels."""
    targets = np.asarray(ds.targets)
    new = np.where(targets >= 0, mapping[np.clip(targets, 0, None)], -1)
    keep = np.flatnonzero(new != -2)
    out = ds.subset(keep)
    out.targets = new[keep]
    out.class_names = list(names)
    return out


def apply_classes(source: Source, cfg: "ClassesConfig") -> tuple[Source, dict[str, list[str]]]:
    """``source`` restricted / merged as ``cfg`` says, and the mapping (new name -> source names) to record."""
    groups = class_groups(cfg)
    mapping = label_map(list(source.class_names), groups)
    names = list(groups)
    splits = {name: relabel(ds, mapping, names) for name, ds in source.splits.items()}
    return Source(names, splits, channels=source.channels, info=dict(source.info)), groups
