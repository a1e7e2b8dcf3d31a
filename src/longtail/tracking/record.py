"""``tracking.json``: which MLflow run a run directory (or a bench's folder) logs to, so later commands add to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import rundir
from ..core.errors import LongtailError

#: in a run directory (and in a bench's output_dir, for the grid's parent run)
TRACKING = rundir.TRACKING


def read_record(folder: Path) -> dict[str, Any] | None:
    """The folder's MLflow record (uri, experiment, experiment_id, run_id), or None when it has none or it is unreadable."""
    path = Path(folder) / TRACKING
    if not path.is_file():
        return None
    try:
        record = rundir.read_json(path).get("mlflow")
    except LongtailError:
        return None
    if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in ("uri", "experiment_id", "run_id")):
        return None
    return record


def write_record(folder: Path, uri: str, experiment: str, experiment_id: str, run_id: str) -> None:
    """Name the MLflow run of ``folder`` (atomically)."""
    rundir.write_json(Path(folder) / TRACKING, {"mlflow": {"uri": uri, "experiment": experiment, "experiment_id": experiment_id, "run_id": run_id}})
