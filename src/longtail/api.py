"""The Python API. Everything the CLI does goes through these functions, so a notebook can too.

>>> import longtail
>>> result = longtail.train("configs/quickstart.yaml", overrides=["train.epochs=3"])
>>> longtail.evaluate(result.run_dir, split="test")["balanced_accuracy"]
>>> longtail.predict(result.run_dir, ["lesion.jpg"], out="preds.csv")
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import distributed, rundir
from .config import Config, dump, load_config
from .errors import LongtailError
from .interrupt import Interrupted
from .run_clock import RunClock
from .wording import option

log = logging.getLogger("longtail")

DATA_META = "data.json"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass
class TrainResult:
    run_dir: Path
    results: dict[str, Any] | None  # None when the run stopped early (train.stop_after) and can be resumed
    finished: bool


def _as_config(config: Config | str | Path | dict[str, Any], overrides: list[str] | None) -> Config:
    if isinstance(config, Config):
        if overrides:
            return load_config(raw=config.model_dump(mode="json"), overrides=overrides)
        return config
    if isinstance(config, dict):
        return load_config(raw=config, overrides=overrides)
    return load_config(config, overrides)


def train(
    config: Config | str | Path | dict[str, Any] | None = None,
    overrides: list[str] | None = None,
    *,
    overwrite: bool = False,
    resume: str | Path | None = None,
    stop_after: int | None = None,
    on_epoch: Callable[[Any], None] | None = None,
) -> TrainResult:
    """Train (or resume) a run; evaluate the best checkpoint on test once at the end.

    ``resume`` is a run directory: its saved config is used (``overrides`` may extend it, e.g.
    ``train.epochs=8``) and training continues from ``checkpoints/last.pt``. ``stop_after`` ends this
    call after that many epochs in total, leaving a resumable run (time-sliced training).
    ``on_epoch`` is called with an :class:`longtail.engine.EpochReport` after every finished epoch.

    ``train.devices=N`` (N > 1) runs N data-parallel processes on this machine through torch's
    elastic agent and returns rank 0's result; under ``torchrun`` each launched process calls this
    and joins the process group (see ``docs/scaling.md``).
    """
    if on_epoch is not None:
        from .engine import epoch_listener

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


def _requested_config(config: Any, overrides: list[str] | None, resume: str | Path | None) -> Config | None:
    """The config a call will run, read early for ``train.devices`` / ``train.device`` (None when it cannot
    be read yet: the normal path then raises its own one-line error)."""
    try:
        if resume is not None:
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
    """Rank 0 (or the only process): claim or resume the run directory and train in it."""
    started = time.perf_counter()
    if resume is not None:
        run_dir = Path(resume)
        if not run_dir.parent.is_dir():
            raise LongtailError(f"cannot resume: '{run_dir}' is not a folder; pass the run directory `longtail train` created")
        with rundir.RunLock(run_dir):
            return _resume(run_dir, overrides, stop_after, started)
    if config is None:
        raise LongtailError("train needs a config (a YAML path, a dict or a Config) or resume=RUN_DIR")
    cfg = _as_config(config, overrides)
    run_dir, lock = _claim_run_dir(Path(cfg.output_dir) / cfg.name, overwrite)
    if run_dir.name != cfg.name:
        cfg = cfg.model_copy(update={"name": run_dir.name})
    try:
        result = _new_run(run_dir, cfg, overwrite, stop_after, started)
    except BaseException:
        lock.release(remove_made_parents=not run_dir.exists())  # a failed first run leaves no folder behind
        raise
    lock.release()
    return result


def _claim_run_dir(run_dir: Path, overwrite: bool) -> tuple[Path, rundir.RunLock]:
    """The folder a new run writes to, locked: ``run_dir``, or when it is taken and ``overwrite`` was
    not asked, the next free ``<name>-2``, ``<name>-3``, ... (said in one line, never a silent clash)."""
    lock = rundir.RunLock(run_dir)
    lock.acquire()
    if overwrite:
        return run_dir, lock
    try:
        rundir.recover(run_dir)  # a swap killed half-way is undone before deciding the name is taken
        is_taken = rundir.taken(run_dir)
    except BaseException:
        lock.release()
        raise
    if not is_taken:
        return run_dir, lock
    lock.release()
    start = 2
    for attempt in range(100):
        candidate = rundir.next_free(run_dir, start)
        start = int(candidate.name.rsplit("-", 1)[1]) + 1
        lock = rundir.RunLock(candidate)
        try:
            lock.acquire()
        except LongtailError:  # another process is starting that name: take the next
            if attempt == 99:
                raise
            continue
        try:
            rundir.recover(candidate)
            if not rundir.taken(candidate):
                break
        except BaseException:
            lock.release()
            raise
        lock.release()
    log.warning("run directory '%s' is taken; this run is '%s' (pass %s to replace it, or %s to continue it)",
                run_dir, candidate, option("overwrite"), option("resume", run_dir))
    return candidate, lock


def _new_run(run_dir: Path, cfg: Config, overwrite: bool, stop_after: int | None, started: float) -> TrainResult:
    """Train a new run in ``run_dir`` (hold its lock); ``--overwrite`` builds it beside the old run and swaps at the end."""
    rundir.recover(run_dir)
    replacing = rundir.check_new(run_dir, overwrite)
    work = rundir.staging_dir(run_dir) if replacing else run_dir
    if not replacing:
        rundir.create(work)
    try:
        result = _train_in(work, cfg, None, stop_after, started)
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


def _resume(run_dir: Path, overrides: list[str] | None, stop_after: int | None, started: float) -> TrainResult:
    """Continue ``run_dir`` from its last checkpoint, validated before anything in the run is written."""
    from .checkpoint import load_checkpoint

    rundir.recover(run_dir)  # a swap killed half-way is undone first
    if not run_dir.is_dir():
        raise LongtailError(f"cannot resume: '{run_dir}' is not a folder; pass the run directory `longtail train` created")
    if (run_dir / rundir.PACES).is_dir():
        return _resume_spbl(run_dir, overrides, stop_after, started)
    if not (run_dir / rundir.LAST).is_file():
        raise LongtailError(f"cannot resume: '{run_dir}' has no {rundir.LAST}; start a new run without {option('resume')}")
    cfg = load_config(run_dir / rundir.CONFIG, overrides)
    state = load_checkpoint(run_dir / rundir.LAST)
    _check_checkpoint(state, cfg, None, run_dir / rundir.LAST)
    total = sum(s.epochs for s in cfg.resolved_stages())
    done = int(state["progress"]["global_epoch"])
    finished = (run_dir / rundir.RESULTS).is_file()
    if finished and (done >= total or state["progress"].get("stopped_epoch") is not None):
        log.info("run '%s' is already complete (%d/%d epochs); nothing changed. Evaluate it with `longtail eval %s`", run_dir, done, total, run_dir)
        return TrainResult(run_dir, rundir.read_json(run_dir / rundir.RESULTS), finished=True)
    rundir.clean_temp_files(run_dir)
    if not finished:
        try:
            return _train_in(run_dir, cfg, state, stop_after, started)
        except Interrupted as e:
            raise _interrupted(e, run_dir) from None
    # extending a finished run (more epochs): work on a copy, swap it in only when it succeeds
    work = rundir.staging_dir(run_dir, copy=True)
    try:
        result = _train_in(work, cfg, state, stop_after, started)
    except BaseException as e:
        rundir.discard(work)
        if isinstance(e, Interrupted):
            raise _interrupted(e, None) from None
        raise
    rundir.commit(work, run_dir)
    _rewrite_report(run_dir)
    return TrainResult(run_dir, result.results, result.finished)


def _resume_spbl(run_dir: Path, overrides: list[str] | None, stop_after: int | None, started: float) -> TrainResult:
    """Continue an SPBL run after its last finished pace (a pace cut short resumes from its own last.pt)."""
    cfg = load_config(run_dir / rundir.CONFIG, overrides)
    if cfg.spbl is None:
        raise LongtailError(f"cannot resume: '{run_dir}' holds SPBL paces but its config has no spbl block; resume with the run's own config")
    if (run_dir / rundir.RESULTS).is_file():
        log.info("run '%s' is already complete (every SPBL pace and the final evaluation); nothing changed. Evaluate it with `longtail eval %s`", run_dir, run_dir)
        return TrainResult(run_dir, rundir.read_json(run_dir / rundir.RESULTS), finished=True)
    rundir.clean_temp_files(run_dir)
    try:
        return _train_in(run_dir, cfg, None, stop_after, started, resuming=True)
    except Interrupted as e:
        raise _interrupted(e, run_dir) from None


def _train_in(work: Path, cfg: Config, resume_state: dict[str, Any] | None, stop_after: int | None, started: float, resuming: bool = False) -> TrainResult:
    """Build data and model, then train in the folder ``work`` (the run directory or its staging copy).

    ``resuming`` continues an SPBL run, whose checkpoints live per pace (no ``resume_state``). Under DDP
    this runs on rank 0, which sends the other ranks what to train."""
    if cfg.spbl is not None and distributed.active():
        raise LongtailError("SPBL runs in one process (its paces fit a feature SVM between CNN runs); set train.devices=1 and start it without torchrun")
    splits = _saved_splits(work, cfg)
    distributed.send_plan((work, cfg, resume_state, splits))
    return _train_planned(work, cfg, resume_state, splits, stop_after, started, resuming)


def _train_planned(work: Path, cfg: Config, resume_state: dict[str, Any] | None, splits: dict[str, Any] | None,
                   stop_after: int | None, started: float, resuming: bool = False) -> TrainResult:
    """Every rank: build data and model and train; only rank 0 writes into ``work``."""
    from .engine import Trainer, seed_everything, select_device
    from .interrupt import stop_on_signals
    from .models import build_model, weights_record

    # the starting weights (a missing package or file fails here, before the data is decoded)
    weights = weights_record(cfg.model)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.seed, cfg.train.deterministic)

    if not distributed.is_main():
        distributed.barrier()  # rank 0 decodes into the tensor cache first; the other ranks then load it
    bundle, spec = _build_data(cfg, splits)
    if distributed.is_main():
        distributed.barrier()
    check_eval_classes(cfg, list(bundle.class_names))
    if resume_state is not None:
        _check_checkpoint(resume_state, cfg, bundle.num_classes, work / rundir.LAST, list(bundle.class_names))
    # provenance is written only once the data is built and a resume checkpoint has been checked
    if distributed.is_main():
        (work / rundir.CONFIG).write_text(dump(cfg))
        environment = rundir.environment(cfg.seed, weights=weights)
        environment["processes"] = distributed.describe()
        rundir.write_json(work / rundir.ENVIRONMENT, environment)
        rundir.write_json(work / rundir.SPLITS, bundle.split_indices)
        rundir.write_json(work / DATA_META, _data_meta(bundle, cfg, spec))

    device = distributed.device_for(select_device(cfg.train.device))
    if cfg.spbl is not None:
        with stop_on_signals():
            return _train_spbl(cfg, work, bundle, device, resuming, stop_after, started)
    model = build_model(cfg.model, bundle.num_classes, bundle.channels, bundle.train_counts).to(device)
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
        from .report import write_report

        write_report(run_dir)
    except Exception as e:  # a report failure must never lose a finished run
        log.warning("the run finished but its report could not be written (%s); retry with `longtail report %s`", e, run_dir)


def check_item_kind(model: Any, bundle: Any, name: str) -> None:
    """Clips need a 3D backbone and images a 2D one: say so in one line instead of a conv shape error."""
    clips = bool(getattr(bundle.train, "frames_per_clip", None))
    takes_clips = bool(getattr(getattr(model, "backbone", None), "takes_clips", False))
    if clips and not takes_clips:
        raise LongtailError(f"model '{name}' takes images but data.source gives clips (C x T x H x W); "
                            "use a 3D backbone: r3d_18, mc3_18, r2plus1d_18, resnext3d_101 or resnext3d")
    if takes_clips and not clips:
        raise LongtailError(f"model '{name}' is a 3D backbone for clips but data.source gives images; use an image backbone or a clip source (egtea)")


def _train_spbl(cfg: Config, run_dir: Path, bundle: Any, device: torch.device, resume: bool, stop_after: int | None, started: float) -> TrainResult:
    """SPBL's paces (each an engine run in ``run_dir/paces/<k>``), then the same final evaluation."""
    from .spbl import pipeline

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


def _saved_splits(run_dir: Path, cfg: Config) -> dict[str, Any] | None:
    if (run_dir / rundir.SPLITS).is_file():
        return rundir.read_json(run_dir / rundir.SPLITS)
    if cfg.data.split.file:
        path = Path(cfg.data.split.file)
        if not path.is_file():
            raise LongtailError(f"data.split.file '{path}' not found; point it at the splits.json of an earlier run")
        return rundir.read_json(path)
    return None


def _build_data(cfg: Config, splits: dict[str, Any] | None) -> tuple[Any, Any]:
    """The run's data, with ``data.image_size: model`` / ``data.normalize: model`` taken from the backbone."""
    from .data import build_data
    from .models import data_for_model

    data_cfg, spec = data_for_model(cfg.data, cfg.model)
    stats = (spec.mean, spec.std) if spec is not None and cfg.data.normalize == "model" else None
    return build_data(data_cfg, cfg.seed, splits=splits, model_stats=stats), spec


def _data_meta(bundle: Any, cfg: Config, spec: Any) -> dict[str, Any]:
    """What the data looked like to the model; predict decodes and normalises new inputs from it."""
    norm = cfg.data.normalize
    return {
        "class_names": list(bundle.class_names),
        "train_counts": [int(c) for c in bundle.train_counts],
        "channels": int(bundle.channels),
        "image_size": list(bundle.image_size) if bundle.image_size is not None else None,
        "image_size_from": spec.source if spec is not None and cfg.data.image_size == "model" else "config",
        "norm_mean": [float(m) for m in bundle.norm_mean],
        "norm_std": [float(s) for s in bundle.norm_std],
        "norm_from": spec.source if spec is not None and norm == "model" else norm if isinstance(norm, str) else "config",
        # a clip run: predict reads clip folders, this many frames each (segment middles)
        "frames_per_clip": getattr(bundle.train, "frames_per_clip", None),
        # data.classes: each class of the run -> the source classes it was made of (None: the source's own)
        "class_map": bundle.class_map,
        # which data path each split used: memory, mmap (memory-mapped cache) or stream (decode per image)
        "storage": bundle.storage(),
    }


def _check_checkpoint(state: dict[str, Any], cfg: Config, num_classes: int | None, path: Path, class_names: list[str] | None = None) -> None:
    """Refuse a checkpoint of another architecture, model setting or class list (one line)."""
    from .checkpoint import check_for_model

    check_for_model(state, path, cfg.model, num_classes, class_names)


# ------------------------------------------------------------------------------ final evaluation
def finalize(run_dir: Path, cfg: Config, bundle: Any, device: torch.device, eval_pipeline: Any, record: dict[str, Any], train_seconds: float) -> dict[str, Any]:
    """Evaluate the best checkpoint on validation and (once) on test; choose post-hoc strengths on validation.

    ``record`` holds what training knows (best_epoch, best_val_score, epochs, method extras) and
    goes into results.json as is.
    """
    from .engine import predict_dataset
    from .gallery import save_errors
    from .scoring import split_metrics

    distributed.barrier()  # rank 0 has written best.pt before any rank reads it
    model = load_model(run_dir, cfg, bundle.num_classes, bundle.channels, bundle.train_counts, device)
    tta = _tta(cfg)
    counts = np.asarray(bundle.train_counts)
    outputs = {}
    for split in ("val", "test"):
        dataset = getattr(bundle, split)
        if dataset is None:
            continue
        out = predict_dataset(model, dataset, eval_pipeline, device, cfg.data.eval_batch_size, cfg.train.precision, tta, cfg.data.num_workers, cfg.train.channels_last)
        if distributed.is_main():
            rundir.save_predictions(run_dir, split, out.logits, out.targets, out.ids, out.features)
        outputs[split] = out
    posthoc = choose_posthoc(cfg, model, outputs["val"], counts)
    if distributed.is_main():
        rundir.write_json(run_dir / rundir.POSTHOC, posthoc)
    results: dict[str, Any] = {
        "name": cfg.name,
        "class_names": list(bundle.class_names),
        **({"class_map": bundle.class_map} if bundle.class_map is not None else {}),
        "train_counts": [int(c) for c in counts],
        "select_metric": cfg.train.select_metric,
        **record,
        "train_seconds": round(train_seconds, 1),
        "test_evaluated_once": True,
        "val": split_metrics(outputs["val"].logits, outputs["val"].targets, counts, bundle.class_names, cfg.eval),
        "posthoc": posthoc,
    }
    if "test" in outputs and (outputs["test"].targets < 0).all():
        # a withheld test set (ISIC): its predictions are saved for a submission, no metrics
        results["test_unlabelled"] = {"images": len(outputs["test"].targets), "predictions": f"{rundir.PREDICTIONS}/test.npz"}
    elif "test" in outputs:
        test = outputs["test"]
        results["test"] = split_metrics(test.logits, test.targets, counts, bundle.class_names, cfg.eval)
        if posthoc:
            adjusted = apply_posthoc_to(model, test, posthoc, counts)
            results["test_posthoc"] = split_metrics(adjusted, test.targets, counts, bundle.class_names, cfg.eval)
    if not distributed.is_main():  # the same results on every rank; rank 0 writes them
        return results
    if "test" in results:
        save_errors(run_dir / rundir.PREDICTIONS, bundle.test, outputs["test"].logits, outputs["test"].targets, outputs["test"].ids)
    try:
        results["decision"] = _decision(cfg, bundle, outputs, model, posthoc, counts)
    except LongtailError as e:  # e.g. a validation split without a positive image: the run itself is fine
        log.warning("the decision tables (operating points, target prior) were skipped: %s", e)
        results["decision"] = {"note": str(e)}
    rundir.write_json(run_dir / rundir.RESULTS, results)
    try:
        from .report import write_report

        write_report(run_dir)
    except Exception as e:  # a report failure must never lose a finished run
        log.warning("the run finished but its report could not be written (%s); retry with `longtail report %s`", e, run_dir)
    return results


def _decision(cfg: Config, bundle: Any, outputs: dict[str, Any], model: Any, posthoc: dict[str, Any], counts: np.ndarray) -> dict[str, Any]:
    """results.json's ``decision`` block: AUC/AP per class, operating points, metrics under eval.target_prior."""
    from .decision import summarise

    val, test = outputs["val"], outputs.get("test")
    adjusted, label = None, None
    if posthoc and cfg.eval.target_prior is not None and test is not None:
        adjusted = apply_posthoc_to(model, test, posthoc, counts)
        toward = posthoc.get("logit_adjust", {}).get("target_prior") is not None
        label = "target prior, logit-adjusted toward it" if toward else "target prior, after the post-hoc correction"
    return summarise(val.logits, val.targets, test.logits if test is not None else None, test.targets if test is not None else None,
                     bundle.class_names, cfg.eval.positive, cfg.eval.target_prior, adjusted, label)


def check_eval_classes(cfg: Config, class_names: list[str]) -> None:
    """eval.positive names classes and eval.target_prior has one frequency per class: checked before training."""
    from .decision import check_target_prior, positive_indices

    positive_indices(cfg.eval.positive, class_names)
    check_target_prior(cfg.eval.target_prior, class_names)


def _head_params(model: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    head = getattr(model, "head", None)
    weight = getattr(head, "weight", None)
    bias = getattr(head, "bias", None)
    w = weight.detach().float().cpu().numpy() if isinstance(weight, torch.Tensor) else None
    b = bias.detach().float().cpu().numpy() if isinstance(bias, torch.Tensor) else None
    return w, b


def choose_posthoc(cfg: Config, model: Any, val: Any, counts: np.ndarray) -> dict[str, Any]:
    """Pick logit-adjustment / tau-norm strengths on the validation split only."""
    from .posthoc import fit_posthoc

    if not (cfg.posthoc.tau_norm or cfg.posthoc.logit_adjust):
        return {}
    w, b = _head_params(model)
    return fit_posthoc(
        val.logits, val.targets, counts,
        logit_adjustment=cfg.posthoc.logit_adjust, tau_norm=cfg.posthoc.tau_norm,
        grid=cfg.posthoc.grid, metric=cfg.posthoc.metric,
        val_features=val.features, head_weight=w, head_bias=b,
        target_prior=cfg.eval.target_prior if cfg.posthoc.target_prior else None,
    )


def apply_posthoc_to(model: Any, out: Any, posthoc: dict[str, Any], counts: np.ndarray) -> np.ndarray:
    from .posthoc import apply_posthoc

    w, b = _head_params(model)
    return apply_posthoc(out.logits, out.features, posthoc, w, b, counts)


# ------------------------------------------------------------------------------ loading a run
def load_run_config(run_dir: str | Path) -> Config:
    run_dir = Path(run_dir)
    if not (run_dir / rundir.CONFIG).is_file():
        raise LongtailError(f"'{run_dir}' is not a longtail run directory (no {rundir.CONFIG}); pass the folder `longtail train` created")
    return load_config(run_dir / rundir.CONFIG)


def load_model(run_dir: Path, cfg: Config, num_classes: int, channels: int, counts: Any, device: torch.device, checkpoint: str = rundir.BEST) -> Any:
    """Rebuild the architecture (including stage head swaps) and load a checkpoint's weights."""
    from .models import build_model, load_checkpoint_weights

    from .checkpoint import load_checkpoint

    path = Path(run_dir) / checkpoint
    if not path.is_file():
        raise LongtailError(f"no checkpoint '{path}'; the run has not validated yet (train it, or resume it)")
    state = load_checkpoint(path, map_location=device)
    meta = Path(run_dir) / DATA_META
    names = rundir.read_json(meta)["class_names"] if meta.is_file() else None
    _check_checkpoint(state, cfg, num_classes, path, names)
    # the checkpoint holds every weight: never fetch or read pretrained weights again here
    model_cfg = cfg.model.model_copy(update={"pretrained": False, "weights": None})
    model = build_model(model_cfg, num_classes, channels, np.asarray(counts)).to(device)
    for head in state.get("heads", []):
        if head is not None:
            model.set_head(head, class_counts=np.asarray(counts))
    load_checkpoint_weights(model, state["model"], str(path))
    if cfg.spbl is not None:  # an SPBL model's head is its feature classifier
        from .spbl.pipeline import attach_classifier

        attach_classifier(model, Path(run_dir))
    model.to(device).eval()
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


#: ``evaluate(checkpoint=...)`` names -> checkpoint files of a run directory
CHECKPOINTS = {"best": rundir.BEST, "last": rundir.LAST}


def checkpoint_file(name: str) -> str:
    """The run-relative file of checkpoint ``name`` ('best' or 'last'); a one-line error otherwise."""
    if name not in CHECKPOINTS:
        raise LongtailError(f"checkpoint '{name}' is not one of {', '.join(CHECKPOINTS)}; use best (chosen on validation) or last (the final epoch)")
    return CHECKPOINTS[name]


def evaluate(run_dir: str | Path, split: str = "test", checkpoint: str = "best") -> dict[str, Any]:
    """Metrics of a checkpoint on ``split`` ('val' or 'test'), recomputed from the data.

    ``checkpoint``: ``'best'`` (selected on validation) or ``'last'`` (the final epoch, what
    last-epoch protocols report). The last checkpoint's predictions go to ``predictions/<split>_last.npz``
    so the best checkpoint's stored predictions stay those of ``results.json``; the post-hoc strengths
    stored in the run were chosen for the best checkpoint and are applied to it only.
    """
    checkpoint_path = checkpoint_file(checkpoint)
    from .data import build_pipeline
    from .engine import predict_dataset, select_device
    from .scoring import split_metrics

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    splits = rundir.read_json(run_dir / rundir.SPLITS) if (run_dir / rundir.SPLITS).is_file() else None
    bundle, _ = _build_data(cfg, splits)
    dataset = getattr(bundle, split, None)
    if dataset is None:
        raise LongtailError(f"this run's data has no '{split}' split; use --split val")
    device = select_device(cfg.train.device)
    model = load_model(run_dir, cfg, bundle.num_classes, bundle.channels, bundle.train_counts, device, checkpoint=checkpoint_path)
    pipeline = build_pipeline(cfg.data.eval_transforms, bundle.norm_mean, bundle.norm_std, train=False)
    out = predict_dataset(model, dataset, pipeline, device, cfg.data.eval_batch_size, cfg.train.precision, _tta(cfg), cfg.data.num_workers, cfg.train.channels_last)
    rundir.save_predictions(run_dir, split if checkpoint == "best" else f"{split}_{checkpoint}", out.logits, out.targets, out.ids, out.features)
    counts = np.asarray(bundle.train_counts)
    result = split_metrics(out.logits, out.targets, counts, bundle.class_names, cfg.eval)
    posthoc = _read_posthoc(run_dir) if checkpoint == "best" else {}
    if posthoc:
        result["posthoc"] = split_metrics(apply_posthoc_to(model, out, posthoc, counts), out.targets, counts, bundle.class_names, cfg.eval)
    return result


def _tta(cfg: Config) -> Any:
    from .engine import _build_tta

    return _build_tta(cfg)


def _read_posthoc(run_dir: Path) -> dict[str, Any]:
    path = run_dir / rundir.POSTHOC
    return rundir.read_json(path) if path.is_file() else {}


def find_images(paths: list[str | Path]) -> list[Path]:
    """Expand folders (recursively) into image files; keep explicit files as given."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES))
        elif p.is_file():
            found.append(p)
        else:
            raise LongtailError(f"'{p}' does not exist; pass image files or folders of images")
    if not found:
        raise LongtailError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {', '.join(map(str, paths))}")
    return found


def _prediction_inputs(images: list[str | Path], cfg: Config, meta: dict[str, Any]) -> tuple[Any, list[Any]]:
    """(item i -> uint8 tensor, the inputs): image files, or clip folders for a clip run.

    With ``data.on_bad_image=skip`` unreadable image files are left out (and said so) instead of
    stopping the whole batch."""
    from .data import Decoder

    if cfg.data.image_size == "model":  # decode at the size training used (recorded in data.json)
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"image_size": meta["image_size"]})})
    if meta.get("frames_per_clip"):
        from .data.clips import clips_for_prediction, find_clip_folders

        folders = find_clip_folders(list(images))
        clips = clips_for_prediction(folders, Decoder.from_config(cfg.data, meta["channels"]), int(meta["frames_per_clip"]))
        return clips.load, folders
    files = find_images(list(images))
    if cfg.data.on_bad_image == "skip":
        from .data.decode import readable

        kept = [f for f in files if readable(f)]
        if len(kept) < len(files):
            log.warning("skipped %d unreadable image(s) of %d (data.on_bad_image=skip), e.g. '%s'",
                        len(files) - len(kept), len(files), next(f for f in files if f not in kept))
        if not kept:
            raise LongtailError("no readable image among the inputs (data.on_bad_image=skip left out every one)")
        files = kept
    # the size the model was trained at (data.image_size, or the data's own size when it sets none),
    # so an input of another size is resized as training would have, not stacked at its own size
    decoder = Decoder(meta["channels"], meta.get("image_size") or cfg.data.image_size, cfg.data.preprocess)
    return (lambda i: decoder(files[i])), files


@torch.no_grad()
def predict(run_dir: str | Path, images: list[str | Path], out: str | Path | None = None, batch_size: int = 64,
            overrides: list[str] | None = None, top_k: int = 3, submission: str | None = None,
            rule_051: bool = True) -> list[dict[str, Any]]:
    """Predicted label, its probability, the ``top_k`` labels and every class's probability, for image
    files or folders, with the run's best model and post-hoc setting.

    Returns one dict per image (``image``, ``label``, ``probability``, ``top_<i>``,
    ``top_<i>_probability``, ``warning``, one probability per class name); writes a CSV when
    ``out`` is given. ``overrides`` are dotted config overrides for reading the inputs (e.g.
    ``data.on_bad_image=skip``); the model's settings are checked against the checkpoint. Decoding
    matches training exactly (same pre-processing and size). ``warning`` says when an input's
    channels or size are far from the training data's (also logged once). For a clip run the inputs
    are clip folders (or folders holding them), read as evaluation reads clips.

    ``submission`` (``'isic2018'`` or ``'isic2019'``) writes ``out`` as that ISIC challenge's
    submission CSV instead (bare image ids, the challenge's columns, UNK for 2019 as
    ``eval.unk_class`` says, the 0.51 rule unless ``rule_051=False``; see :mod:`longtail.submission`).
    """
    from . import prediction
    from .data import build_pipeline
    from .engine import autocast, select_device

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    if overrides:
        cfg = load_config(run_dir / rundir.CONFIG, overrides)
    meta = rundir.read_json(run_dir / DATA_META)
    class_names, counts = meta["class_names"], np.asarray(meta["train_counts"])
    top_k = prediction.check_top_k(top_k, len(class_names))
    header = prediction.columns(class_names, top_k)
    device = select_device(cfg.train.device)
    model = load_model(run_dir, cfg, len(class_names), meta["channels"], counts, device)
    pipeline = build_pipeline(cfg.data.eval_transforms, meta["norm_mean"], meta["norm_std"], train=False)
    posthoc = _read_posthoc(run_dir)
    tta = _tta(cfg)
    load, files = _prediction_inputs(images, cfg, meta)
    clips = bool(meta.get("frames_per_clip"))
    if submission is not None:
        from .submission import check_challenge

        if out is None:
            raise LongtailError("a submission needs an output file; pass out= (--out on the command line)")
        check_challenge(submission, class_names, cfg.eval.unk_class)  # refuse a run of other classes before any work
    rows: list[dict[str, Any]] = []
    all_logits: list[np.ndarray] = []
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        x = torch.stack([load(i) for i in range(start, start + len(chunk))]).to(device)
        x = pipeline.batch(x)
        with autocast(device, cfg.train.precision):
            if tta is not None:
                logits, feats = tta.predict(lambda v: model(v), x), None
            else:
                logits, feats = model(x, return_features=True)
        logits_np = logits.float().cpu().numpy()
        if posthoc:
            from .posthoc import apply_posthoc

            w, b = _head_params(model)
            logits_np = apply_posthoc(logits_np, None if feats is None else feats.float().cpu().numpy(), posthoc, w, b, counts)
        all_logits.append(logits_np)
        probs = torch.softmax(torch.as_tensor(logits_np), dim=1).numpy()
        for f, p in zip(chunk, probs):
            warning = "" if clips else prediction.input_warning(f, meta)
            rows.append(prediction.row(str(f), p, class_names, top_k, warning))
    flagged = [r for r in rows if r[prediction.WARNING]]
    if flagged:
        log.warning("%d of %d input(s) are far from the training data (see the warning column), e.g. '%s': %s",
                    len(flagged), len(rows), flagged[0]["image"], flagged[0][prediction.WARNING])
    if submission is not None:
        from .submission import write_challenge_csv

        ids = [Path(f).stem for f in files]
        write_challenge_csv(out, submission, ids, np.concatenate(all_logits), class_names, cfg.eval.unk_class, rule_051)  # type: ignore[arg-type]
    elif out is not None:
        prediction.write_csv(rows, out, header)
    return rows
