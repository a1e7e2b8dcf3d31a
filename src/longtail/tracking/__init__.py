"""Experiment tracking in MLflow (``tracking.mlflow``, ``pip install 'longtail[track]'``), beside the run directory.

Training opens a session (:func:`open_session`: the store checked before anything is written), a bench
grid a parent run (:func:`grid_run`), and later commands add files to a run's MLflow run
(:func:`log_artifacts`, from the run's ``tracking.json``). Importing this package imports no mlflow.
"""

from .artifacts import log_artifacts
from .parent import GridRun, grid_run
from .record import TRACKING, read_record
from .session import TrackingSession, open_session

__all__ = ["TRACKING", "GridRun", "TrackingSession", "grid_run", "log_artifacts", "open_session", "read_record"]
