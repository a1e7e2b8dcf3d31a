"""Files into a run's MLflow run: what training logs at its end, and what later commands (``longtail export``) add."""

from __future__ import annotations

import logging
from pathlib import Path

from .. import rundir
from ..core.errors import LongtailError
from .record import read_record
from .store import Store, open_store, reason

log = logging.getLogger("longtail")


def artifact_path(path: Path, run_dir: Path) -> str | None:
    """Where ``path`` goes among the run's artifacts: its folder inside the run directory, the top for a file elsewhere
    (a folder keeps its own name)."""
    path, run_dir = Path(path).resolve(), Path(run_dir).resolve()
    try:
        inside = path.relative_to(run_dir)
    except ValueError:
        return path.name if path.is_dir() else None
    if path.is_dir():
        return inside.as_posix()
    parent = inside.parent.as_posix()
    return None if parent == "." else parent


def upload(store: Store, run_id: str, path: Path, run_dir: Path) -> None:
    """One file or folder into the MLflow run ``run_id``."""
    where = artifact_path(path, run_dir)
    if Path(path).is_dir():
        store.call("log_artifacts", run_id, str(path), where)
    elif Path(path).is_file():
        store.call("log_artifact", run_id, str(path), where)
    else:
        raise FileNotFoundError(f"'{path}' does not exist")


def _required(run_dir: Path) -> bool | None:
    """The run's ``tracking.required`` from its config.yaml; None when it has no ``tracking.mlflow`` (nothing to add to)."""
    from ..catalog.check import load_config

    try:
        tracking = load_config(Path(run_dir) / rundir.CONFIG).tracking
    except (LongtailError, ValueError, OSError):
        return False  # tracking.json names the run: add to it, a config that no longer reads is not a reason to refuse
    return None if tracking.mlflow is None else tracking.required


def log_artifacts(run_dir: Path, paths: list[Path]) -> None:
    """Add ``paths`` to the MLflow run of ``run_dir`` (its tracking.json). A no-op for a run without tracking; a failure
    is one WARNING line, a LongtailError under ``tracking.required`` (the files themselves are already written)."""
    record = read_record(run_dir)
    if record is None or not paths:
        return
    required = _required(run_dir)
    if required is None:
        return
    try:
        store = open_store(record["uri"], str(record.get("experiment")), record["experiment_id"])
        for path in paths:
            upload(store, record["run_id"], Path(path), run_dir)
    except Exception as e:  # noqa: BLE001 - Unavailable, mlflow's, an OSError of a file: each is the one line below
        problem = f"could not add {', '.join(Path(p).name for p in paths)} to MLflow run {record['run_id']} of '{record['uri']}' ({reason(e)})"
        fix = f"start the server (or fix the store) and add them with mlflow, or run the command again; the files are in '{run_dir}'"
        if required:
            raise LongtailError(f"{problem}; {fix}") from None
        log.warning("%s; %s", problem, fix)
