"""Opening an MLflow store: the client, the experiment, and the limits that keep a dead server from stalling a run.

Every call into MLflow goes through :func:`limits`: an http(s) server that does not answer fails in
seconds (a short timeout, no retries while checking), a ``file:`` store is allowed for the call (mlflow
3 refuses it unless MLFLOW_ALLOW_FILE_STORE is set), and the user's own MLFLOW_* settings win.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import LongtailError
from ..core.schema import MlflowConfig, TrackingConfig

log = logging.getLogger("longtail")

#: what every fix names: the URIs that work
URI_FORMS = "sqlite:///mlflow.db (offline), file:./mlruns or http(s)://host:port"
#: the start's check: a server that does not answer in 5 s is unreachable (no retries)
CHECK_LIMITS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "5", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
#: later calls (epochs, artifacts): a little more patience, still bounded
LOG_LIMITS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "30", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1"}
#: beside a SQLite store's file: where its experiments keep artifacts (mlflow's default, ./mlruns, is the working directory)
ARTIFACTS = "mlartifacts"
SQLITE = "sqlite:///"
#: the OS's reason inside requests' long connection errors: "[Errno 111] Connection refused"
_OS_ERROR = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


class Unavailable(Exception):
    """The store cannot be used; the message names the problem (the caller adds the fix it can offer)."""


@dataclass(frozen=True)
class Store:
    """An open MLflow store and the experiment a run logs to."""

    client: Any  # mlflow.tracking.MlflowClient
    uri: str  # absolute: a relative SQLite / file path is resolved once, so later commands find the same store
    experiment: str
    experiment_id: str

    def same_as(self, record: dict[str, Any]) -> bool:
        """Whether a tracking.json record names this store and experiment."""
        return record.get("uri") == self.uri and record.get("experiment_id") == self.experiment_id

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``client.<method>(...)`` under :data:`LOG_LIMITS`."""
        with limits(self.uri, LOG_LIMITS):
            return getattr(self.client, method)(*args, **kwargs)


def absolute_uri(uri: str) -> str:
    """``uri`` with a relative SQLite or file path made absolute (other URIs as given)."""
    if uri.startswith(SQLITE) and not uri.startswith(SQLITE + "/"):
        return SQLITE + str(Path(uri[len(SQLITE):]).resolve())
    if uri.startswith("file:") and not uri.startswith("file:/"):
        return Path(uri[len("file:"):]).resolve().as_uri()
    if "://" not in uri and not uri.startswith("file:"):  # a plain path: mlflow's file store
        return Path(uri).resolve().as_uri()
    return uri


def artifact_location(uri: str) -> str | None:
    """Where a new experiment of ``uri`` keeps artifacts: beside a SQLite file; None (the store's default) otherwise."""
    if uri.startswith(SQLITE + "/"):
        return (Path(uri[len(SQLITE):]).parent / ARTIFACTS).as_uri()
    return None


@contextlib.contextmanager
def limits(uri: str, values: dict[str, str]) -> Iterator[None]:
    """Set the MLflow environment one call needs (what the user set is kept), then restore it."""
    wanted = dict(values)
    if uri.startswith("file:"):
        wanted["MLFLOW_ALLOW_FILE_STORE"] = "true"
    saved = {key: os.environ.get(key) for key in wanted}
    for key, value in wanted.items():
        os.environ.setdefault(key, value)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def first_line(e: BaseException, limit: int = 200) -> str:
    """An exception as one short line (mlflow's messages run to paragraphs)."""
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def reason(e: BaseException) -> str:
    """Why a store call failed, short: the OS's words when a connection failed ("Connection refused"), else the first line."""
    found = _OS_ERROR.search(str(e))
    return found.group(1).strip() if found else f"{type(e).__name__}: {first_line(e)}"


def connect(cfg: MlflowConfig) -> Store:
    """Open ``cfg``'s store and experiment (created when missing); :class:`Unavailable` when either cannot be used."""
    return open_store(cfg.uri, cfg.experiment)


def open_store(uri: str, experiment: str, experiment_id: str | None = None) -> Store:
    """The store at ``uri`` with ``experiment`` (created when missing), checked under :data:`CHECK_LIMITS`; with
    ``experiment_id`` (a recorded run's) the experiment is taken as it is, never created."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise Unavailable("the mlflow package is not installed (pip install 'longtail[track]')") from None
    uri = absolute_uri(uri)
    with limits(uri, CHECK_LIMITS):
        try:
            client = MlflowClient(tracking_uri=uri)
            if experiment_id is not None:
                return Store(client, uri, experiment, experiment_id)
            found = client.get_experiment_by_name(experiment)
            if found is None:
                experiment_id = client.create_experiment(experiment, artifact_location=artifact_location(uri))
            elif found.lifecycle_stage != "active":
                raise Unavailable(f"experiment '{experiment}' of '{uri}' is deleted (restore it with `mlflow experiments restore`, "
                                  "or name another tracking.mlflow.experiment)")
            else:
                experiment_id = found.experiment_id
        except Unavailable:
            raise
        except Exception as e:  # noqa: BLE001 - mlflow raises its own, requests' and sqlalchemy's errors alike
            raise Unavailable(f"cannot use the MLflow store '{uri}' ({reason(e)})") from None
    return Store(client, uri, experiment, str(experiment_id))


def check(tracking: TrackingConfig) -> Store | None:
    """The store ``tracking`` names, checked before a run or grid starts: None (one WARNING line, the run goes on
    untracked) when it cannot be used, a LongtailError instead under ``tracking.required``."""
    if tracking.mlflow is None:
        return None
    try:
        return connect(tracking.mlflow)
    except Unavailable as e:
        fix = f"start the server or fix tracking.mlflow.uri ({URI_FORMS})"
        if tracking.required:
            raise LongtailError(f"{e}; {fix}, or set tracking.required=false to train untracked") from None
        log.warning("MLflow tracking is off for this run: %s; %s. The run goes on untracked (tracking.required=true makes this an error)", e, fix)
        return None


def status_after(e: BaseException) -> str:
    """The MLflow status of a run that stopped on ``e``: KILLED for a stop on a signal (it can be resumed), else FAILED."""
    from ..engine.interrupt import Interrupted

    return "KILLED" if isinstance(e, (Interrupted, KeyboardInterrupt)) or not isinstance(e, Exception) else "FAILED"
