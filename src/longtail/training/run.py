"""Training a run: one process or N data-parallel ones, a new run or a resumed one, SPBL or the Trainer.

Rank 0 owns the run directory (claims, stages, swaps, writes); every other rank trains exactly
what rank 0 planned and writes nothing, so a run's files are the same at any process count.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import rundir
from ..catalog.check import load_config
from ..core.config import dump
from ..core.errors import LongtailError
from ..core.schema import Config
from ..core.wording import option
from ..engine import distributed
from ..engine.interrupt import Interrupted
from ..evaluation.cohorts import check_columns
from ..rundir.clock import RunClock
from ..tracking import TrackingSession, open_session
from . import resume_check
from .claim import claim_run_dir
from .finalize import check_eval_classes, finalize
from .loading import DATA_META, build_run_data, check_checkpoint, check_item_kind, data_meta, saved_splits
from .metadata import run_encoding, width

log = logging.getLogger("longtail")


@dataclass
class TrainResult:
    """What a ``train`` call left: the run's folder, its results.json (once finished) and whether it finished."""

    run_dir: Path
    results: dict[str, Any] | None  # None when the run stopped early (train.stop_after) and can be resumed
    finished: bool


def train(
    config: Config | str | Path | dict[str, Any] | None = None,
    overrides: list[str] | None = None,
    *,
    overwrite: bool = False,
    resume: str | Path | None = None,
    stop_after: int | None = None,
    on_epoch: Callable[[Any], None] | None = None,
) -> TrainResult:
    """:func:`longtail.api.train`: listen to epochs, start N processes or join torchrun's, then train as rank 0 or follow it."""
    if on_epoch is not None:
        from ..engine.hooks import epoch_listener

        with epoch_listener(on_epoch):
            return train(config, overrides, overwrite=overwrite, resume=resume, stop_after=stop_after)
    if not distributed.launched():
        processes = _requested_processes(config, overrides, resume)
        if processes > 1:
            return distributed.launch(processes, _launched_train, config, overrides, overwrite, resume, stop_after)
    with distributed.session(_requested_device(config, overrides, resume)):
        if not distributed.is_main():
            return _follow(stop_after, time.perf_counter())
        with distributed.leading():
            return _train_main(config, overrides, overwrite, resume, stop_after)


def _launched_train(config: Any, overrides: list[str] | None, overwrite: bool, resume: str | Path | None, stop_after: int | None) -> TrainResult:
    """The entry point of each process that ``train.devices=N`` starts."""
    return train(config, overrides, overwrite=overwrite, resume=resume, stop_after=stop_after)


def _as_config(config: Config | str | Path | dict[str, Any], overrides: list[str] | None) -> Config:
    """A checked Config from any of the forms ``train`` accepts, with ``overrides`` applied."""
    if isinstance(config, Config):
        if overrides:
            return load_config(raw=config.model_dump(mode="json"), overrides=overrides)
        return config
    if isinstance(config, dict):
        return load_config(raw=config, overrides=overrides)
    return load_config(config, overrides)


def _requested_config(config: Any, overrides: list[str] | None, resume: str | Path | None) -> Config | None:
    """The config a call will run, read early for ``train.devices`` / ``train.device`` (None when it cannot
    be read yet: the normal path then raises its own one-line error)."""
    try:
        if resume is not None and config is None:
            path = Path(resume) / rundir.CONFIG
            return load_config(path, overrides) if path.is_file() else None
        return None if config is None else _as_config(config, overrides)
    except LongtailError:
        return None


def _requested_processes(config: Any, overrides: list[str] | None, resume: str | Path | None) -> int:
    cfg = _requested_config(config, overrides, resume)
    return 1 if cfg is None else cfg.train.devices


def _requested_device(config: Any, overrides: list[str] | None, resume: str | Path | None) -> str:
    if not distributed.launched():
        return "auto"
    cfg = _requested_config(config, overrides, resume)
    return "auto" if cfg is None else cfg.train.device


def _follow(stop_after: int | None, started: float) -> TrainResult:
    """A rank other than 0: train what rank 0 decided (folder, config, checkpoint, splits), writing nothing."""
    plan = distributed.receive_plan()
    if plan is None:  # rank 0 had nothing to train (a finished run) or stopped before training
        return TrainResult(Path("."), None, finished=False)
    work, cfg, resume_state, splits = plan
    return _train_planned(work, cfg, resume_state, splits, stop_after, started)


def _train_main(config: Any, overrides: list[str] | None, overwrite: bool, resume: str | Path | None, stop_after: int | None) -> TrainResult:
    """Rank 0 (or the only process): claim or resume the run directory and train in it.

    The MLflow store (tracking.mlflow) is checked first, before anything is written: under tracking.required a
    store that cannot be used fails the call here, otherwise it is one WARNING and the run goes on untracked."""
    started = time.perf_counter()
    if resume is not None:
        # the real folder: a resume through a symbolic link extends (stages, swaps) the run itself, not the link
        run_dir = Path(os.path.realpath(resume)) if Path(resume).is_symlink() else Path(resume)
        if not run_dir.parent.is_dir():
            raise LongtailError(f"cannot resume: '{run_dir}' is not a folder; pass the run directory `longtail train` created")
        track = open_session(_requested_config(config, overrides, resume))
        with rundir.RunLock(run_dir):
            with track.watching():
                result = _resume(run_dir, config, overrides, stop_after, started, track)
            track.finish(result.run_dir, result.finished)  # a tracking failure is a WARNING: it never costs the run
            return result
    if config is None:
        raise LongtailError("train needs a config (a YAML path, a dict or a Config) or resume=RUN_DIR")
    cfg = _as_config(config, overrides)
    track = open_session(cfg)
    run_dir, lock = claim_run_dir(Path(cfg.output_dir) / cfg.name, overwrite)
    if run_dir.name != cfg.name:
        cfg = cfg.model_copy(update={"name": run_dir.name})
    try:
        with track.watching():
            result = _new_run(run_dir, cfg, overwrite, stop_after, started, track)
        track.finish(result.run_dir, result.finished)
    except BaseException:
        lock.release(remove_made_parents=not run_dir.exists())  # a failed first run leaves no folder behind
        raise
    lock.release()
    return result


def _new_run(run_dir: Path, cfg: Config, overwrite: bool, stop_after: int | None, started: float, track: TrackingSession) -> TrainResult:
    """Train a new run in ``run_dir`` (hold its lock); ``--overwrite`` builds it beside the old run and swaps at the end."""
    rundir.recover(run_dir)
    replacing = rundir.check_new(run_dir, overwrite)
    work = rundir.staging_dir(run_dir) if replacing else run_dir
    if not replacing:
        rundir.create(work)
    try:
        result = _train_in(work, cfg, None, stop_after, started, track=track)
    except BaseException as e:
        keep = not replacing and rundir.resumable(work)  # resumable: keep it
        if not keep:
            rundir.discard(work)  # a failed first run leaves nothing that --resume cannot continue
        if isinstance(e, Interrupted):
            raise _interrupted(e, run_dir if keep else None) from None
        raise
    if replacing:
        rundir.commit(work, run_dir)
        _rewrite_report(run_dir)
    return TrainResult(run_dir, result.results, result.finished)


def _resume_config(run_dir: Path, config: Any, overrides: list[str] | None, saved: dict[str, Any]) -> tuple[Config, dict[str, Any]]:
    """The config a resume continues with (the run's own, or ``config`` when one is given, plus the
    overrides), checked against the one it trained with: (config, the allowed changes)."""
    cfg = load_config(run_dir / rundir.CONFIG, overrides) if config is None else _as_config(config, overrides)
    changes = resume_check.resume_changes(saved, cfg, run_dir)
    # the run keeps its own name and folder (a -c config or an override cannot rename it; a bench cell evaluated in a
    # staging copy keeps the name it will have)
    own = load_config(run_dir / rundir.CONFIG)
    cfg = cfg.model_copy(update={"name": own.name, "output_dir": own.output_dir})
    if changes:
        log.info("resuming '%s' with changed settings: %s", run_dir, resume_check.describe(changes))
    return cfg, changes


def _resume(run_dir: Path, config: Any, overrides: list[str] | None, stop_after: int | None, started: float, track: TrackingSession) -> TrainResult:
    """Continue ``run_dir`` from its last checkpoint, validated before anything in the run is written."""
    from ..rundir.checkpoint import load_checkpoint

    rundir.recover(run_dir)  # a swap killed half-way is undone first
    if not run_dir.is_dir():
        raise LongtailError(f"cannot resume: '{run_dir}' is not a folder; pass the run directory `longtail train` created")
    if (run_dir / rundir.PACES).is_dir():
        return _resume_spbl(run_dir, config, overrides, stop_after, started, track)
    if not (run_dir / rundir.LAST).is_file():
        raise LongtailError(f"cannot resume: '{run_dir}' has no {rundir.LAST}; start a new run without {option('resume')}")
    state = load_checkpoint(run_dir / rundir.LAST)
    cfg, changes = _resume_config(run_dir, config, overrides, resume_check.saved_config(state, run_dir))
    check_checkpoint(state, cfg, None, run_dir / rundir.LAST)
    state["resume_changes"] = changes  # recorded in resumes.jsonl once the data and the checkpoint are checked
    total = sum(s.epochs for s in cfg.resolved_stages())
    done = int(state["progress"]["global_epoch"])
    finished = (run_dir / rundir.RESULTS).is_file()
    if finished and (done >= total or state["progress"].get("stopped_epoch") is not None):
        log.info("run '%s' is already complete (%d/%d epochs); nothing changed. Evaluate it with `longtail eval %s`", run_dir, done, total, run_dir)
        return TrainResult(run_dir, rundir.read_json(run_dir / rundir.RESULTS), finished=True)
    rundir.clean_temp_files(run_dir)
    if not finished:
        try:
            return _train_in(run_dir, cfg, state, stop_after, started, track=track)
        except Interrupted as e:
            raise _interrupted(e, run_dir) from None
    # extending a finished run (more epochs): work on a copy, swap it in only when it succeeds
    work = rundir.staging_dir(run_dir, copy=True)
    try:
        result = _train_in(work, cfg, state, stop_after, started, track=track)
    except BaseException as e:
        rundir.discard(work)
        if isinstance(e, Interrupted):
            raise _interrupted(e, None) from None
        raise
    rundir.commit(work, run_dir)
    _rewrite_report(run_dir)
    return TrainResult(run_dir, result.results, result.finished)


def _resume_spbl(run_dir: Path, config: Any, overrides: list[str] | None, stop_after: int | None, started: float, track: TrackingSession) -> TrainResult:
    """Continue an SPBL run after its last finished pace (a pace cut short resumes from its own last.pt)."""
    from ..core.config import to_plain

    cfg, _ = _resume_config(run_dir, config, overrides, to_plain(load_config(run_dir / rundir.CONFIG)))
    if cfg.spbl is None:
        raise LongtailError(f"cannot resume: '{run_dir}' holds SPBL paces but its config has no spbl block; resume with the run's own config")
    if (run_dir / rundir.RESULTS).is_file():
        log.info("run '%s' is already complete (every SPBL pace and the final evaluation); nothing changed. Evaluate it with `longtail eval %s`", run_dir, run_dir)
        return TrainResult(run_dir, rundir.read_json(run_dir / rundir.RESULTS), finished=True)
    rundir.clean_temp_files(run_dir)
    try:
        return _train_in(run_dir, cfg, None, stop_after, started, resuming=True, track=track)
    except Interrupted as e:
        raise _interrupted(e, run_dir) from None


def _train_in(work: Path, cfg: Config, resume_state: dict[str, Any] | None, stop_after: int | None, started: float, resuming: bool = False,
              track: TrackingSession | None = None) -> TrainResult:
    """Build data and model, then train in the folder ``work`` (the run directory or its staging copy).

    ``resuming`` continues an SPBL run, whose checkpoints live per pace (no ``resume_state``). Under DDP
    this runs on rank 0, which sends the other ranks what to train; only rank 0 logs to MLflow (``track``)."""
    if cfg.spbl is not None and distributed.active():
        raise LongtailError("SPBL runs in one process (its paces fit a feature SVM between CNN runs); set train.devices=1 and start it without torchrun")
    if track is not None:  # the MLflow run (a resumed run continues the one its tracking.json names)
        track.begin(work, cfg, int(resume_state["progress"]["global_epoch"]) if resume_state is not None else 0)
    splits = saved_splits(work, cfg)
    distributed.send_plan((work, cfg, resume_state, splits))
    return _train_planned(work, cfg, resume_state, splits, stop_after, started, resuming)


def _train_planned(work: Path, cfg: Config, resume_state: dict[str, Any] | None, splits: dict[str, Any] | None,
                   stop_after: int | None, started: float, resuming: bool = False) -> TrainResult:
    """Every rank: build data and model and train; only rank 0 writes into ``work``."""
    from ..engine.device import seed_everything, select_device
    from ..engine.interrupt import stop_on_signals
    from ..engine.trainer import Trainer
    from ..models import build_model, weights_record

    # the starting weights (a missing package or file fails here, before the data is decoded)
    weights = weights_record(cfg.model)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.seed, cfg.train.deterministic)

    if not distributed.is_main():
        distributed.barrier()  # rank 0 decodes into the tensor cache first; the other ranks then load it
    bundle, spec = build_run_data(cfg, splits)
    if distributed.is_main():
        distributed.barrier()
    check_eval_classes(cfg, list(bundle.class_names))
    check_columns(cfg.eval, bundle.metadata)  # eval.subgroups / eval.aggregate_by name columns the data has
    encoding = run_encoding(cfg, bundle, work)  # model.metadata: fitted on train (new run) or the run's own (resume); None without
    if resume_state is not None:
        check_checkpoint(resume_state, cfg, bundle.num_classes, work / rundir.LAST, list(bundle.class_names))
        rundir.read_jsonl(work / rundir.METRICS)  # a damaged log is refused before the run's files are rewritten
    # provenance is written only once the data is built and a resume checkpoint has been checked
    if distributed.is_main():
        if resume_state is not None:
            resume_check.record_resume(work, int(resume_state["progress"]["global_epoch"]), resume_state.get("resume_changes", {}))
        rundir.atomic_write_bytes(work / rundir.CONFIG, dump(cfg).encode())
        environment = rundir.environment(cfg.seed, weights=weights)
        environment["processes"] = distributed.describe()
        rundir.write_json(work / rundir.ENVIRONMENT, environment)
        rundir.write_json(work / rundir.SPLITS, bundle.split_indices)
        rundir.write_json(work / DATA_META, data_meta(bundle, cfg, spec))
        if encoding is not None:
            rundir.write_json(work / rundir.METADATA_ENCODING, encoding.to_json())

    device = distributed.device_for(select_device(cfg.train.device))
    if cfg.spbl is not None:
        with stop_on_signals():
            return _train_spbl(cfg, work, bundle, device, resuming, stop_after, started)
    model = build_model(cfg.model, bundle.num_classes, bundle.channels, bundle.train_counts, metadata_dim=width(encoding)).to(device)
    check_item_kind(model, bundle, cfg.model.name)
    trainer = Trainer(cfg, work, bundle, model, device, clock=RunClock(started=started))
    if resume_state is not None and distributed.is_main():
        rundir.truncate_metrics(work, resume_state["progress"]["global_epoch"])
    # under DDP a signal ends the processes (the agent stops them all): they resume from the last
    # epoch's last.pt, since a stop inside an epoch would need every rank to stop at the same batch
    with stop_on_signals() if not distributed.active() else contextlib.nullcontext():
        trainer.fit(resume_state, stop_after=stop_after)
    total_epochs = sum(s.epochs for s in trainer.stages)
    if trainer.progress.global_epoch < total_epochs and trainer.progress.stopped_epoch is None:
        log.info("stopped after %d/%d epochs; continue with %s", trainer.progress.global_epoch, total_epochs, option("resume_command", work))
        return TrainResult(work, None, finished=False)
    progress = trainer.progress
    record = {"best_epoch": progress.best_epoch, "best_val_score": progress.best_score, "epochs": progress.global_epoch}
    if cfg.train.early_stopping is not None:
        # the epoch whose validation ended the run (None: the run used its whole budget)
        record["stopped_epoch"] = progress.stopped_epoch
    results = finalize(work, cfg, bundle, trainer.device, trainer.eval_pipeline, record, train_seconds=trainer.clock.seconds())
    return TrainResult(work, results, finished=True)


def _train_spbl(cfg: Config, run_dir: Path, bundle: Any, device: torch.device, resume: bool, stop_after: int | None, started: float) -> TrainResult:
    """SPBL's paces (each an engine run in ``run_dir/paces/<k>``), then the same final evaluation."""
    from ..spbl import pipeline

    clock = RunClock(started=started)
    runner, finished = pipeline.run(cfg, run_dir, bundle, device, resume, stop_after, clock)
    if not finished:
        log.info("SPBL stopped before its last pace; continue with %s", option("resume_command", run_dir))
        return TrainResult(run_dir, None, finished=False)
    spbl_record = pipeline.publish_final(cfg, run_dir, bundle, runner)
    last = rundir.read_json(pipeline.pace_dir(run_dir, spbl_record["paces"] - 1) / pipeline.PACE_RECORD)
    record = {
        "best_epoch": last["cnn_best_epoch"],
        "best_val_score": last["val_balanced_accuracy"],
        "epochs": spbl_record["paces"] * sum(s.epochs for s in cfg.resolved_stages()),
        "spbl": spbl_record,
    }
    results = finalize(run_dir, cfg, bundle, device, runner.eval_pipeline, record, train_seconds=clock.seconds())
    return TrainResult(run_dir, results, finished=True)


def _interrupted(e: Interrupted, resumable: Path | None) -> Interrupted:
    """A stop on SIGTERM/SIGINT, worded for what is left on disk."""
    if resumable is not None:
        text = f"{e}; {rundir.LAST} holds every finished batch, continue with {option('resume_command', resumable)}"
    else:
        text = f"{e}; nothing was changed (the unfinished new run was discarded)"
    return Interrupted(text, e.signum)


def _rewrite_report(run_dir: Path) -> None:
    """The report names its folder: write it again once a staged run has its final place."""
    if not (run_dir / rundir.RESULTS).is_file():
        return
    try:
        from ..evaluation.report import write_report

        write_report(run_dir)
    except Exception as e:  # a report failure must never lose a finished run
        log.warning("the run finished but its report could not be written (%s); retry with `longtail report %s`", e, run_dir)
