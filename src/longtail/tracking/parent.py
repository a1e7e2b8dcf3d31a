"""A bench grid's parent run: every cell's run is nested under it (mlflow.parentRunId), the grid's tables are its artifacts.

The parent is named in ``<output_dir>/tracking.json``, so a rerun of the grid (more seeds, a resumed cell)
nests its new cells under the same parent instead of starting another one.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.schema import TrackingConfig
from .artifacts import upload
from .record import read_record, write_record
from .store import Store, check, reason, status_after
from .values import longtail_version

log = logging.getLogger("longtail")

#: the open parents, innermost last: (store uri, experiment id, run id)
_PARENTS: list[tuple[str, str, str]] = []
PARENT_TAG = "mlflow.parentRunId"


def current_parent(store: Store) -> str | None:
    """The run id of the innermost open grid run in ``store``'s experiment (None: a run of its own)."""
    for uri, experiment_id, run_id in reversed(_PARENTS):
        if uri == store.uri and experiment_id == store.experiment_id:
            return run_id
    return None


@dataclass
class GridRun:
    """The parent run of a grid (``store`` None: the grid is not tracked)."""

    store: Store | None
    run_id: str | None
    folder: Path

    def log_files(self, paths: list[Path]) -> None:
        """The grid's result files (CSV, Markdown and HTML summaries) as artifacts of the parent; a failure is a WARNING."""
        if self.store is None or self.run_id is None:
            return
        try:
            for path in paths:
                if Path(path).is_file():
                    upload(self.store, self.run_id, Path(path), self.folder)
        except Exception as e:  # noqa: BLE001 - a tracking failure costs the tracking, never the grid
            log.warning("the grid's tables could not be logged to MLflow run %s (%s); they are in '%s'", self.run_id, reason(e), Path(paths[0]).parent)

    def end(self, status: str) -> None:
        if self.store is None or self.run_id is None:
            return
        try:
            self.store.call("set_terminated", self.run_id, status)
        except Exception as e:  # noqa: BLE001 - a tracking failure costs the tracking, never the grid
            log.warning("MLflow run %s of the grid could not be marked %s (%s)", self.run_id, status, reason(e))


def _start(store: Store, folder: Path, name: str) -> str:
    """The grid's parent run: the one ``folder`` records (reopened), else a new one recorded there."""
    recorded = read_record(folder)
    run = recorded_run(store, recorded) if recorded is not None and store.same_as(recorded) else None
    if run is not None:
        store.call("update_run", run.info.run_id, status="RUNNING")
        return str(run.info.run_id)
    run = store.call("create_run", store.experiment_id, run_name=name, tags={"longtail.bench": name, "longtail.version": longtail_version()})
    folder.mkdir(parents=True, exist_ok=True)
    write_record(folder, store.uri, store.experiment, store.experiment_id, run.info.run_id)
    return str(run.info.run_id)


@contextlib.contextmanager
def grid_run(tracking: TrackingConfig | None, folder: Path, name: str) -> Iterator[GridRun]:
    """Open the grid's parent run for the block: runs started inside it (its cells) in the same store and experiment
    are nested under it. The store is checked first (a WARNING, or an error under ``tracking.required``)."""
    store = None if tracking is None else check(tracking)
    grid = GridRun(store, None, Path(folder))
    if store is not None:
        try:
            grid.run_id = _start(store, Path(folder), name)
        except Exception as e:  # noqa: BLE001 - a tracking failure costs the tracking, never the grid
            log.warning("MLflow tracking of grid '%s' is off: its parent run could not be started (%s); the cells are tracked on their own",
                        name, reason(e))
            grid.store = None
    if grid.run_id is None or store is None:
        yield grid
        return
    entry = (store.uri, store.experiment_id, grid.run_id)
    _PARENTS.append(entry)
    try:
        yield grid
    except BaseException as e:
        grid.end(status_after(e))
        raise
    finally:
        _PARENTS.remove(entry)
    grid.end("FINISHED")


def recorded_run(store: Store, recorded: dict[str, Any]) -> Any:
    """The live MLflow run a tracking.json record names, or None when the store no longer has it (deleted: start a new one)."""
    from mlflow.exceptions import MlflowException

    try:
        run = store.call("get_run", recorded["run_id"])
    except MlflowException:
        return None
    return run if run.info.lifecycle_stage == "active" else None
