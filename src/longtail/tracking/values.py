"""What a run sends to MLflow, in the shapes MLflow accepts: config params, epoch metrics, final metrics.

MLflow refuses a param value over 6000 characters, more than 100 params in one call, and names outside
``[/\\w.\\- :]``; these helpers keep every value within that, so one odd key never loses a batch.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

#: mlflow's limits on one param value and on the params of one log_batch call
MAX_PARAM_VALUE = 6000
PARAMS_PER_BATCH = 100
#: the characters mlflow allows in a param, metric or tag name
_NAME = re.compile(r"[^/\w.\- :]")
#: results.json splits whose summary metrics are logged at the end (with the split as prefix)
FINAL_SPLITS = ("test", "test_posthoc")
#: results.json's top-level numbers logged at the end
FINAL_FIELDS = ("best_epoch", "best_val_score", "epochs", "train_seconds")


def name(key: str) -> str:
    """``key`` with every character mlflow refuses in a name replaced by '_'."""
    return _NAME.sub("_", key)[:250]


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested config -> ``{dotted key: leaf}``; lists of sections get their index (``stages.1.epochs``), other lists stay leaves."""
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(tree, list) and tree and any(isinstance(v, dict) for v in tree):
        out = {}
        for i, value in enumerate(tree):
            out.update(flatten(value, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): tree}


def param_value(value: Any) -> str:
    """A config leaf as a param: strings as they are, anything else as JSON (0.05, true, null, [8, 8]), cut to mlflow's limit."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= MAX_PARAM_VALUE else text[: MAX_PARAM_VALUE - 3] + "..."


def config_params(plain: dict[str, Any]) -> dict[str, str]:
    """The resolved config (``Config.model_dump(mode="json")``) as dotted params."""
    return {name(key): param_value(value) for key, value in flatten(plain).items()}


def batches(items: list[Any], size: int = PARAMS_PER_BATCH) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _number(value: Any) -> float | None:
    """A finite int or float (never a bool) as float, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def epoch_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of one metrics.jsonl record (loss, lr, val_* ...), without the epoch itself (the step)."""
    out = {}
    for key, value in record.items():
        number = _number(value)
        if number is not None and key != "epoch":
            out[name(key)] = number
    return out


def final_metrics(results: dict[str, Any]) -> dict[str, float]:
    """results.json's summary numbers: ``test_<metric>``, ``test_posthoc_<metric>`` and :data:`FINAL_FIELDS`."""
    out = {}
    for split in FINAL_SPLITS:
        for key, value in (results.get(split) or {}).items():
            number = _number(value)
            if number is not None:
                out[name(f"{split}_{key}")] = number
    for key in FINAL_FIELDS:
        number = _number(results.get(key))
        if number is not None:
            out[key] = number
    return out


def longtail_version() -> str:
    """The installed longtail's version, for a run's tags (read from the package metadata: ``import longtail`` would
    reach the package face, above this layer)."""
    from importlib import metadata

    try:
        return metadata.version("longtail")
    except metadata.PackageNotFoundError:
        return "unknown"
