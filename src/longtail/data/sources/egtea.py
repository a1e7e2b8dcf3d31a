"""EGTEA Gaze+ action clips as frame folders (CDB loss's third benchmark, seeds.md 4.5).

Split files have one line per clip, ``<clip name> <action id> <verb id> <noun id>``, ids 1-based.
Frames live in ``<root>/<video>/<clip>/000000.jpg ...`` where ``<video>`` is the first three
dash-separated tokens of the clip name (``OP01-R01-PastaSalad``), which is what
``longtail data extract-frames`` writes. Which id is the label is ``label`` (verbs by default, 19
classes, as in the CDB code).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from ...core.errors import ConfigError, DataError
from ...core.registry import DATASETS
from ..clips import ClipDataset, scan_clips
from ..decode import Decoder, probe_channels
from .base import MAX_INFERRED_CLASSES, Source, read_text, require_dir, require_file

LABEL_FIELDS = {"action": 1, "verb": 2, "noun": 3}
VIDEO_TOKENS = 3


def video_of(clip: str, tokens: int = VIDEO_TOKENS) -> str:
    """The video folder of a clip: its first ``tokens`` dash-separated parts (EGTEA naming)."""
    parts = clip.split("-")
    return "-".join(parts[:tokens]) if len(parts) > tokens else clip


def read_split_file(path: Path, field: int) -> tuple[list[str], list[int]]:
    """``<clip> <action> <verb> <noun>`` lines -> (clip names, 1-based ids of ``field``)."""
    clips, ids = [], []
    for n, line in enumerate(read_text(path).splitlines(), start=1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) < 4:
            raise DataError(f"{path} line {n}: expected '<clip> <action> <verb> <noun>', got '{line.strip()}'")
        try:
            label = int(parts[field])
        except ValueError:
            raise DataError(f"{path} line {n}: '{parts[field]}' is not an integer id") from None
        if label < 1:
            raise DataError(f"{path} line {n}: id {label} is below 1; EGTEA ids are 1-based")
        clips.append(parts[0])
        ids.append(label)
    if not clips:
        raise DataError(f"split file '{path}' has no clips; expected lines '<clip> <action> <verb> <noun>'")
    return clips, ids


@DATASETS.register("egtea")
def egtea(
    root: str,
    train: str,
    val: str | None = None,
    test: str | None = None,
    label: Literal["verb", "noun", "action"] = "verb",
    frames_per_clip: int = 10,
    num_classes: int | None = None,
    classes: Sequence[str] | None = None,
) -> Source:
    """EGTEA Gaze+ clips (frame folders + split files '<clip> <action> <verb> <noun>', 1-based); label verb/noun/action."""
    if label not in LABEL_FIELDS:
        raise ConfigError(f"data.source.label must be one of {', '.join(LABEL_FIELDS)}, got '{label}'")
    base = require_dir(root, "frame root", "root")
    files = {"train": train, "val": val, "test": test}
    raw = {s: read_split_file(require_file(f, f"{s} split file", s), LABEL_FIELDS[label]) for s, f in files.items() if f is not None}
    largest = max(max(ids) for _, ids in raw.values())
    total = sum(len(ids) for _, ids in raw.values())
    if classes is None and num_classes is None and largest > max(total, MAX_INFERRED_CLASSES):  # a hostile id must not build a billion class names
        raise DataError(f"{label} id {largest} in the split files would make {largest:,} classes but they list {total:,} clips; fix the id or set data.source.num_classes")
    n = len(classes) if classes is not None else num_classes if num_classes is not None else largest
    if classes is not None and num_classes is not None and len(classes) != num_classes:
        raise ConfigError(f"data.source.classes has {len(classes)} names but num_classes is {num_classes}; make them agree")
    if largest > n:
        raise DataError(f"{label} id {largest} in the split files exceeds the {n} classes; fix num_classes / classes")
    names = [str(c) for c in classes] if classes is not None else [f"{label} {i + 1}" for i in range(n)]
    splits = {}
    channels = None
    for s, (clips, ids) in raw.items():
        frames, problems = scan_clips([str(base / video_of(c) / c) for c in clips])
        if channels is None:
            channels = next((probe_channels(f[0]) for f in frames if f), None)
        splits[s] = ClipDataset(frames, np.asarray(ids, dtype=np.int64) - 1, names, Decoder(channels=channels or 3),
                                frames_per_clip, ids=clips, groups=np.asarray([video_of(c) for c in clips]), problems=problems)
    return Source(names, splits, channels=channels)
