"""Metrics over groups of the evaluated images: per subgroup of a metadata column, and per case (lesion).

``eval.subgroups`` names metadata columns (HAM10000 ``sex``, ``localization``, ``age``; any column of a
CSV source); each gets a table of its groups on the split (:func:`longtail.evaluation.subgroups.subgroup_table`).
A column named ``age`` is cut into ``eval.age_bands``. ``eval.aggregate_by`` names a column grouping
the images of one case (HAM10000 ``lesion_id``): the metrics are computed again over cases, each case's
images' probabilities averaged (:func:`longtail.evaluation.lesions.aggregate_by_group`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.errors import ConfigError
from ..core.schema import EvalConfig
from ..metrics.inputs import softmax
from .decision import positive_indices
from .lesions import aggregate_by_group
from .scoring import split_metrics
from .subgroups import age_bands, subgroup_table

#: the split-level metrics shown for images against cases
CASE_METRICS = ("balanced_accuracy", "accuracy", "macro_f1", "gmean", "mauc")


#: eval.bootstrap.groups values that are not metadata columns
RESAMPLING_UNITS = ("auto", "none")


def needed_columns(eval_cfg: EvalConfig) -> list[tuple[str, str]]:
    """(config key, column) for every metadata column the eval section names."""
    named = [*(("eval.subgroups", c) for c in eval_cfg.subgroups or []),
             *([("eval.aggregate_by", eval_cfg.aggregate_by)] if eval_cfg.aggregate_by else [])]
    if eval_cfg.bootstrap.groups not in RESAMPLING_UNITS:
        named.append(("eval.bootstrap.groups", eval_cfg.bootstrap.groups))
    return named


def check_columns(eval_cfg: EvalConfig, metadata: dict[str, dict[str, str]] | None) -> None:
    """Every column eval.subgroups / eval.aggregate_by / eval.bootstrap.groups names is in the data's metadata: checked before training."""
    wanted = needed_columns(eval_cfg)
    if not wanted:
        return
    if not metadata:
        key, column = wanted[0]
        raise ConfigError(f"{key} names metadata column '{column}', but this data source has no per-image metadata "
                          "(the csv and ham10000 sources have); remove it or use such a source")
    available = sorted({k for row in metadata.values() for k in row})
    for key, column in wanted:
        if column not in available:
            extra = " (or 'auto' / 'none')" if key == "eval.bootstrap.groups" else ""
            raise ConfigError(f"{key}: column '{column}' is not in the data's metadata (columns: {', '.join(available)}); "
                              f"name one of those{extra} or remove it")


def subgroup_tables(logits: np.ndarray, targets: np.ndarray, columns: dict[str, Sequence[Any]], class_names: list[str],
                    eval_cfg: EvalConfig, split: str) -> list[dict[str, Any]]:
    """One table per eval.subgroups column on the labelled images of a split."""
    labelled = np.asarray(targets) >= 0
    y, pred = np.asarray(targets)[labelled], np.asarray(logits).argmax(axis=1)[labelled]
    positive = positive_indices(eval_cfg.positive, class_names) or None
    tables = []
    for column in eval_cfg.subgroups or []:
        values = np.asarray(columns[column], dtype=object)[labelled]
        groups = age_bands(values, eval_cfg.age_bands) if column == "age" else values
        tables.append(subgroup_table(y, pred, groups, column, len(class_names), positive, eval_cfg.subgroup_min_count, split))
    return tables


def case_metrics(logits: np.ndarray, targets: np.ndarray, case_ids: Sequence[Any], train_counts: np.ndarray,
                 class_names: list[str], eval_cfg: EvalConfig) -> dict[str, Any]:
    """The split's metrics over images and over cases (eval.aggregate_by), side by side."""
    labelled = np.asarray(targets) >= 0
    z, y = np.asarray(logits, dtype=np.float64)[labelled], np.asarray(targets)[labelled]
    ids = [case_ids[i] for i in np.flatnonzero(labelled)]
    probs = softmax(z.copy())
    case_probs, case_y, cases = aggregate_by_group(probs, y, ids, class_names)
    # log of the averaged probabilities: their softmax is the averages again, so every metric reads them as scores
    case_logits = np.log(np.clip(case_probs, 1e-12, 1.0))
    image = split_metrics(z, y, train_counts, class_names, eval_cfg)
    case = split_metrics(case_logits, case_y, train_counts, class_names, eval_cfg)
    return {"column": eval_cfg.aggregate_by, "images": int(len(y)), "cases": len(cases),
            "image": {k: image.get(k) for k in CASE_METRICS}, "case": {k: case.get(k) for k in CASE_METRICS}}
