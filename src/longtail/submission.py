"""ISIC challenge submission CSVs: ``image,<CLASS...>[,UNK]`` with one probability row per image.

Reproduces the MBIT conventions (seeds.md 2.9): an optional ``UNK`` column (ISIC 2019 scores an
"unknown" class the training data does not have), filled with zeros or with
``1 - max_k sigmoid_k``, and the "0.51 rule": the ISIC scorer thresholds each column at 0.5, so
a row whose largest value is <= 0.5 would predict no class at all; its largest value is raised
to 0.51 so that the argmax becomes a positive prediction.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .errors import LongtailError
from .metrics import softmax, to_numpy

UnkMode = Literal["zero", "one_minus_max_sigmoid"]


def with_unk(scores: np.ndarray, mode: UnkMode) -> np.ndarray:
    """The class columns with an UNK column appended (all re-softmaxed in sigmoid mode).

    ``one_minus_max_sigmoid`` expects per-class sigmoid scores in [0, 1] (not a softmax), as MBIT
    trains ISIC 2019 with ``VALID_ADD_ONE_CLASS``; it appends ``1 - max_k s_k`` and, like MBIT,
    re-softmaxes the C + 1 values so each row sums to 1 (argmax preserved).
    """
    if mode == "zero":
        return np.concatenate([scores, np.zeros((len(scores), 1))], axis=1)
    if mode == "one_minus_max_sigmoid":
        unk = 1.0 - scores.max(axis=1, keepdims=True)
        return softmax(np.concatenate([scores, unk], axis=1))
    raise LongtailError(f"unknown unk_mode '{mode}'; use 'zero' or 'one_minus_max_sigmoid'")


def apply_rule_051(probs: np.ndarray) -> np.ndarray:
    """Raise each row's maximum to 0.51 where it is <= 0.5 (returns a copy)."""
    out = probs.copy()
    rows = np.flatnonzero(out.max(axis=1) <= 0.5)
    out[rows, out[rows].argmax(axis=1)] = 0.51
    return out


def write_isic_submission(
    path: str | Path,
    image_ids: Sequence[str],
    probabilities: Any,
    class_names: Sequence[str],
    add_unk: bool = False,
    unk_mode: UnkMode = "zero",
    rule_051: bool = False,
) -> Path:
    """Write an ISIC-format CSV and return its path.

    ``probabilities`` is N x C (numpy or torch) in the column order of ``class_names``; softmax
    probabilities, or sigmoid scores with ``unk_mode='one_minus_max_sigmoid'``. ``image_ids`` are
    written as given (strip directories/extensions before if the challenge wants bare ids).
    """
    probs = to_numpy(probabilities).astype(np.float64)
    names = [str(c) for c in class_names]
    if probs.ndim != 2 or probs.shape[1] != len(names):
        raise LongtailError(f"probabilities must be N x {len(names)} (one column per class name), got shape {probs.shape}")
    if len(image_ids) != len(probs):
        raise LongtailError(f"{len(image_ids)} image ids for {len(probs)} probability rows; pass one id per row")
    if not np.isfinite(probs).all() or (probs < 0).any() or (probs > 1).any():
        raise LongtailError("probabilities must lie in [0, 1]; pass softmax (or sigmoid) outputs, not raw logits")
    if add_unk:
        if "UNK" in names:
            raise LongtailError("class_names already contain 'UNK'; use add_unk=False")
        probs = with_unk(probs, unk_mode)
        names = [*names, "UNK"]
    if rule_051:
        probs = apply_rule_051(probs)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", *names])
        for image_id, row in zip(image_ids, probs):
            writer.writerow([str(image_id), *(f"{v:.6f}" for v in row)])
    return out
