"""What `predict` writes for each input: the label, its probability, the top-k, and a warning when
the input looks unlike the training data (a colour photo scored by a grey-digit model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import LongtailError

#: an input side more than this many times larger or smaller than the training size is "far"
SIZE_FACTOR = 4.0
WARNING = "warning"


#: the trust layer's columns, present when the run stores a conformal fit / an abstention threshold
PREDICTION_SET, ABSTAIN = "prediction_set", "abstain"


def columns(class_names: list[str], top_k: int, trust: tuple[str, ...] = ()) -> list[str]:
    """CSV header: image, label, probability, top_<i> and top_<i>_probability, [prediction_set, abstain,] warning, one column per class."""
    fixed = ["image", "label", "probability"]
    for i in range(1, top_k + 1):
        fixed += [f"top_{i}", f"top_{i}_probability"]
    fixed += [*trust, WARNING]
    clash = sorted(set(fixed) & set(class_names))
    if clash:
        raise LongtailError(f"class name(s) {clash} clash with predict's own columns; rename those classes to write a CSV")
    return [*fixed, *class_names]


def row(image: str, probs: np.ndarray, class_names: list[str], top_k: int, warning: str,
        prediction_set: np.ndarray | None = None, abstain: bool | None = None) -> dict[str, Any]:
    """One input's row: the top-k labels by probability (ties in class order), the conformal set (class names joined
    by ';') and the abstention when the run has them, then every class's probability."""
    order = np.argsort(-probs, kind="stable")[:top_k]
    out: dict[str, Any] = {"image": image, "label": class_names[order[0]], "probability": float(probs[order[0]])}
    for i, c in enumerate(order, start=1):
        out[f"top_{i}"] = class_names[c]
        out[f"top_{i}_probability"] = float(probs[c])
    if prediction_set is not None:
        out[PREDICTION_SET] = ";".join(n for n, keep in zip(class_names, prediction_set) if keep)
    if abstain is not None:
        out[ABSTAIN] = "yes" if abstain else "no"
    out[WARNING] = warning
    out.update({name: float(p) for name, p in zip(class_names, probs)})
    return out


def check_top_k(top_k: int, num_classes: int) -> int:
    if top_k < 1:
        raise LongtailError(f"top_k must be at least 1, got {top_k}")
    return min(top_k, num_classes)


def input_warning(path: str | Path, meta: dict[str, Any]) -> str:
    """Why ``path`` is far from the training data ('' when it is not): its channels, or a side more
    than :data:`SIZE_FACTOR` times off the size the run's images were decoded to."""
    from ..core.errors import DataError
    from ..data.decode import GRAY_MODES, open_image

    try:  # the one image opener: a regular raster file only, so no other format's parser ever runs here
        with open_image(path, None) as img:
            grey, (w, h) = img.mode in GRAY_MODES, img.size
    except DataError:
        return ""  # decoding reports bad files itself
    problems = []
    trained_grey = int(meta["channels"]) == 1
    if grey != trained_grey:
        problems.append(f"{'grey' if grey else 'colour'} input, the model was trained on {'grey' if trained_grey else 'colour'} images")
    size = meta.get("image_size")
    if size:
        th, tw = size
        if max(h / th, th / h, w / tw, tw / w) > SIZE_FACTOR:
            problems.append(f"{h}x{w} input, the model was trained on {th}x{tw} images")
    return "; ".join(problems)


def write_csv(rows: list[dict[str, Any]], out: str | Path, header: list[str]) -> Path:
    """``predict``'s CSV, written atomically: a kill mid-write leaves the earlier CSV, never half of one."""
    from ..rundir import write_csv as write_rows  # rundir loads torch: only when writing

    return write_rows(Path(out), header, ([row.get(h, "") for h in header] for row in rows))
