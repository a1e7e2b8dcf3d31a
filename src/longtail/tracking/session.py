"""One training call's MLflow run: checked at the start, fed every epoch, completed with the results and the report.

Training opens a :class:`TrackingSession` before it claims a folder (so ``tracking.required`` fails before
anything is written), begins the MLflow run once the working folder exists (a resumed run continues the
run its tracking.json names), listens to epochs while it trains, and finishes once the run has its final
place. After the start, a failing store costs the tracking (one WARNING line, logging stops), never the run.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import rundir
from ..core.schema import Config
from .artifacts import upload
from .parent import PARENT_TAG, current_parent, recorded_run
from .record import read_record, write_record
from .store import Store, check, reason, status_after
from .values import (
    batches,
    config_params,
    epoch_metrics,
    final_metrics,
    longtail_version,
    name,
)

log = logging.getLogger("longtail")

#: what a finished run logs as artifacts, when present (the card is written first)
ARTIFACTS = (rundir.REPORT_HTML, rundir.REPORT_MD, rundir.REPORT_FILES, rundir.CARD, rundir.CONFIG, rundir.RESULTS)
RUN_DIR_TAG = "longtail.run_dir"
#: mlflow's most metrics in one log_batch call
METRICS_PER_BATCH = 1000


def open_session(cfg: Config | None) -> TrackingSession:
    """The session of a training call with ``cfg`` (None: untracked), its store checked now: a WARNING and an
    untracked session when it cannot be used, a LongtailError under ``tracking.required``."""
    if cfg is None or cfg.tracking.mlflow is None:
        return TrackingSession(None)
    return TrackingSession(check(cfg.tracking))


class TrackingSession:
    """A training call's MLflow run; with no store (untracked, or tracking stopped) every method does nothing."""

    def __init__(self, store: Store | None) -> None:
        self.store = store
        self.parent = None if store is None else current_parent(store)
        self.run_id: str | None = None
        self._offset = 0  # steps of the engine runs before the current one (SPBL's paces restart at epoch 1)
        self._last_epoch = 0

    @property
    def active(self) -> bool:
        return self.store is not None

    # ------------------------------------------------------------------------------ the run
    def begin(self, work: Path, cfg: Config, done: int = 0) -> None:
        """Start (or continue, from ``work``'s tracking.json) the MLflow run and log the config; ``done``: epochs
        already trained, whose metrics.jsonl lines a new MLflow run receives first."""
        if self.store is not None:
            self._guard("start the MLflow run", self._begin, Path(work), cfg, done)

    def _begin(self, work: Path, cfg: Config, done: int) -> None:
        from mlflow.entities import Param, RunTag

        store = self.store
        assert store is not None
        run = self._recorded_run(work)
        if run is not None:
            store.call("update_run", run.info.run_id, status="RUNNING")
            existing: dict[str, str] = dict(run.data.params)
        else:
            tags = {RUN_DIR_TAG: str(work.resolve()), "longtail.version": longtail_version()}
            if self.parent:
                tags[PARENT_TAG] = self.parent
            run = store.call("create_run", store.experiment_id, run_name=cfg.name, tags=tags)
            existing = {}
        self.run_id = run_id = str(run.info.run_id)
        write_record(work, store.uri, store.experiment, store.experiment_id, run_id)
        params = config_params(cfg.model_dump(mode="json"))
        for chunk in batches([Param(k, v) for k, v in params.items() if k not in existing]):
            store.call("log_batch", run_id, params=chunk)
        # a param cannot change in MLflow: a resume's allowed change (train.epochs raised) is kept as a tag
        tags = [RunTag(name(f"resumed.{k}"), v) for k, v in params.items() if k in existing and existing[k] != v]
        if self.parent and run.data.tags.get(PARENT_TAG) != self.parent:
            tags.append(RunTag(PARENT_TAG, self.parent))
        for chunk in batches(tags):
            store.call("log_batch", run_id, tags=chunk)
        self._last_epoch = done
        if not existing and done:
            self._backfill(work, done)

    def _backfill(self, work: Path, done: int) -> None:
        """A resumed run that was not tracked before: its finished epochs first, so the history is whole."""
        from mlflow.entities import Metric

        assert self.store is not None
        stamp = int(time.time() * 1000)
        metrics = [Metric(k, v, stamp, r["epoch"]) for r in rundir.read_jsonl(work / rundir.METRICS)
                   if "train_loss" in r and isinstance(r.get("epoch"), int) and r["epoch"] <= done for k, v in epoch_metrics(r).items()]
        for chunk in batches(metrics, METRICS_PER_BATCH):
            self.store.call("log_batch", self.run_id, metrics=chunk)

    def _recorded_run(self, work: Path) -> Any:
        """The live MLflow run ``work``'s tracking.json names in this store, or None (none, another store, deleted)."""
        recorded = read_record(work)
        if recorded is None or self.store is None or not self.store.same_as(recorded):
            return None
        return recorded_run(self.store, recorded)

    # ------------------------------------------------------------------------------ epochs
    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """Log every epoch finished inside the block; a block that raises ends the MLflow run FAILED (KILLED on a signal)."""
        if self.store is None:
            yield
            return
        from ..engine.hooks import epoch_listener

        try:
            with epoch_listener(self._on_epoch):
                yield
        except BaseException as e:
            self._end(status_after(e))
            raise

    def _on_epoch(self, report: Any) -> None:
        """An :class:`~longtail.engine.hooks.EpochReport`: its numbers at step = epoch (steps go on across SPBL's paces)."""
        if self.store is None or self.run_id is None:
            return
        if self._last_epoch and report.epoch <= self._last_epoch:  # a new engine run inside the same run (an SPBL pace)
            self._offset += self._last_epoch
        self._last_epoch = report.epoch
        from mlflow.entities import Metric

        stamp, step = int(time.time() * 1000), self._offset + int(report.epoch)
        metrics = [Metric(k, v, stamp, step) for k, v in epoch_metrics(report.record).items()]
        self._guard(f"log epoch {step}", self.store.call, "log_batch", self.run_id, metrics=metrics)

    # ------------------------------------------------------------------------------ the end
    def finish(self, run_dir: Path, finished: bool) -> None:
        """The run is in its final place: log the results, the card and the report and end the MLflow run (an
        unfinished run, stopped by ``stop_after``, is ended KILLED: ``--resume`` continues it)."""
        if self.store is None or self.run_id is None:
            return
        if finished:
            self._guard("log the finished run", self._finish, Path(run_dir))
        self._end("FINISHED" if finished else "KILLED")

    def _finish(self, run_dir: Path) -> None:
        from mlflow.entities import Metric, RunTag

        store, run_id = self.store, self.run_id
        assert store is not None and run_id is not None
        tags = [RunTag(RUN_DIR_TAG, str(run_dir.resolve()))]
        env = rundir.read_json(run_dir / rundir.ENVIRONMENT) if (run_dir / rundir.ENVIRONMENT).is_file() else {}
        revision = env.get("git_revision")
        if isinstance(revision, str) and revision:
            tags += [RunTag("longtail.git_revision", revision), RunTag("mlflow.source.git.commit", revision.removesuffix("+dirty"))]
        stamp = int(time.time() * 1000)
        metrics = [Metric(k, v, stamp, 0) for k, v in final_metrics(rundir.read_json(run_dir / rundir.RESULTS)).items()]
        store.call("log_batch", run_id, metrics=metrics, tags=tags)
        write_card(run_dir)
        for item in ARTIFACTS:
            if (run_dir / item).exists():
                upload(store, run_id, run_dir / item, run_dir)

    def _end(self, status: str) -> None:
        if self.store is not None and self.run_id is not None:
            self._guard(f"mark the MLflow run {status}", self.store.call, "set_terminated", self.run_id, status)

    def _guard(self, what: str, call: Any, *args: Any, **kwargs: Any) -> None:
        """Run one MLflow step; a failure is one WARNING and ends the tracking (the run goes on, its files complete)."""
        try:
            call(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - mlflow's, requests' and sqlalchemy's errors alike: a tracking failure never stops a run
            run = f" {self.run_id}" if self.run_id else ""
            log.warning("MLflow tracking stopped: could not %s (%s); the run goes on and its files are complete, "
                        "later steps are not logged to MLflow run%s", what, reason(e), run)
            self.store = None


def write_card(run_dir: Path) -> None:
    """The model card, before it is logged (a failure, or a longtail without evaluation.card, costs the card only)."""
    try:
        from ..evaluation.card import write_card as write

        write(run_dir)
    except Exception as e:  # noqa: BLE001 - ImportError included: the card is optional to the tracking
        log.warning("the model card of '%s' could not be written for MLflow (%s); write it with `longtail card %s`", run_dir, reason(e), run_dir)
