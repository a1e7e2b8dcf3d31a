"""ISIC challenge submission CSVs: ``image,<CLASS...>[,UNK]`` with one probability row per image.

Reproduces the MBIT conventions (seeds.md 2.9): an optional ``UNK`` column (ISIC 2019 scores an
"unknown" class the training data does not have), filled with zeros or with
``1 - max_k sigmoid_k``, and the "0.51 rule": the ISIC scorer thresholds each column at 0.5, so
a row whose largest value is <= 0.5 would predict no class at all; its largest value is raised
to 0.51 so that the argmax becomes a positive prediction.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..core.errors import LongtailError
from ..metrics import softmax, to_numpy

#: the class columns of each challenge's submission file, in its order (ISIC 2019 adds UNK)
CHALLENGE_CLASSES: dict[str, tuple[str, ...]] = {
    "isic2018": ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"),
    "isic2019": ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"),
}

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


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Element-wise logistic function in float64, without overflow for large |z|."""
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def scores_with_unk(logits: Any) -> np.ndarray:
    """MBIT's ``VALID_ADD_ONE_CLASS`` scores: per-class sigmoids plus ``UNK = 1 - max_k sigmoid_k``.

    N x (C + 1), not normalised: what MBIT validates on (argmax, confusion matrix and per-column
    AUCs over the C + 1 columns). An image no class claims (every sigmoid < 0.5) is predicted UNK.
    """
    s = sigmoid(to_numpy(logits))
    return np.concatenate([s, 1.0 - s.max(axis=1, keepdims=True)], axis=1)


def unk_metrics_inputs(logits: Any, class_names: Sequence[str], train_counts: Any) -> dict[str, Any]:
    """Keyword arguments of :func:`longtail.metrics.compute` for the sigmoid + UNK evaluation:
    the C + 1 scores, the class names with ``UNK`` and a training count of 0 for it."""
    counts = None if train_counts is None else [*(int(c) for c in to_numpy(train_counts)), 0]
    return {"logits": scores_with_unk(logits), "class_names": [*map(str, class_names), "UNK"],
            "train_counts": counts, "inputs": "probabilities"}


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
    from ..rundir import write_csv  # atomic: a kill mid-write leaves the earlier file (rundir loads torch: only when writing)

    return write_csv(Path(path), ["image", *names], ([str(image_id), *(f"{v:.6f}" for v in row)] for image_id, row in zip(image_ids, probs)))


def challenge_order(challenge: str, class_names: Sequence[str]) -> list[int]:
    """Index of each of the challenge's columns among ``class_names`` (matched case-insensitively)."""
    if challenge not in CHALLENGE_CLASSES:
        raise LongtailError(f"unknown submission format '{challenge}'; use one of {', '.join(CHALLENGE_CLASSES)}")
    wanted = CHALLENGE_CLASSES[challenge]
    have = {str(c).upper(): i for i, c in enumerate(class_names)}
    missing = [c for c in wanted if c not in have]
    if missing or len(have) != len(wanted):
        raise LongtailError(
            f"a {challenge} submission needs a run trained on exactly the classes {', '.join(wanted)}; this run has "
            f"{', '.join(map(str, class_names))}" + (f" (missing {', '.join(missing)})" if missing else "")
            + "; train on the challenge's ground truth (longtail data convert) or drop --format"
        )
    return [have[c] for c in wanted]


def check_challenge(challenge: str, class_names: Sequence[str], unk_class: str = "none") -> list[int]:
    """:func:`challenge_order`, and refuse sigmoid UNK scores for a challenge without an UNK column."""
    order = challenge_order(challenge, class_names)
    if unk_class == "sigmoid" and challenge != "isic2019":
        raise LongtailError(f"eval.unk_class: sigmoid adds an UNK column, which only the isic2019 format has; this is {challenge}")
    return order


def write_challenge_csv(
    path: str | Path,
    challenge: str,
    image_ids: Sequence[str],
    logits: Any,
    class_names: Sequence[str],
    unk_class: str = "none",
    rule_051: bool = True,
) -> Path:
    """An ISIC 2018 or 2019 submission from a run's logits, as MBIT's ``valid.py --test`` writes it.

    Columns follow the challenge's order whatever the run's class order. ISIC 2019 gets an UNK
    column: 0 with softmax scores, or with ``unk_class='sigmoid'`` (MBIT's ``VALID_ADD_ONE_CLASS``)
    ``1 - max_k sigmoid_k`` with the nine values re-softmaxed. ``rule_051`` raises a row's largest
    value to 0.51 where it is <= 0.5 (MBIT does this for every row).
    """
    order = check_challenge(challenge, class_names, unk_class)
    z = to_numpy(logits).astype(np.float64)[:, order]
    names = list(CHALLENGE_CLASSES[challenge])
    if unk_class == "sigmoid":
        return write_isic_submission(path, image_ids, sigmoid(z), names, add_unk=True, unk_mode="one_minus_max_sigmoid", rule_051=rule_051)
    return write_isic_submission(path, image_ids, softmax(z), names, add_unk=challenge == "isic2019", unk_mode="zero", rule_051=rule_051)
