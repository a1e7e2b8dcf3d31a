"""The Python API. Everything the CLI does goes through these functions, so a notebook can too.

>>> import longtail
>>> result = longtail.train("configs/quickstart.yaml", overrides=["train.epochs=3"])
>>> longtail.evaluate(result.run_dir, split="test")["balanced_accuracy"]
>>> longtail.predict(result.run_dir, ["lesion.jpg"], out="preds.csv")
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import rundir
from .config import Config, dump, load_config
from .errors import LongtailError

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
) -> TrainResult:
    """Train (or resume) a run; evaluate the best checkpoint on test once at the end.

    ``resume`` is a run directory: its saved config is used (``overrides`` may extend it, e.g.
    ``train.epochs=8``) and training continues from ``checkpoints/last.pt``. ``stop_after`` ends this
    call after that many epochs in total, leaving a resumable run (time-sliced training).
    """
    from .engine import Trainer, seed_everything, select_device
    from .models import build_model, weights_record

    started = time.perf_counter()
    if resume is not None:
        run_dir = Path(resume)
        rundir.prepare(run_dir, overwrite=False, resume=True)
        cfg = load_config(run_dir / rundir.CONFIG, overrides)
    else:
        if config is None:
            raise LongtailError("train needs a config (a YAML path, a dict or a Config) or resume=RUN_DIR")
        cfg = _as_config(config, overrides)
        run_dir = Path(cfg.output_dir) / cfg.name
        rundir.prepare(run_dir, overwrite=overwrite, resume=False)
    (run_dir / rundir.CONFIG).write_text(dump(cfg))
    # the starting weights (a missing package or file fails here, before the data is decoded)
    rundir.write_json(run_dir / rundir.ENVIRONMENT, rundir.environment(cfg.seed, weights=weights_record(cfg.model)))
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.seed, cfg.train.deterministic)

    splits = _saved_splits(run_dir, cfg)
    bundle, spec = _build_data(cfg, splits)
    rundir.write_json(run_dir / rundir.SPLITS, bundle.split_indices)
    rundir.write_json(run_dir / DATA_META, _data_meta(bundle, cfg, spec))

    device = select_device(cfg.train.device)
    if cfg.spbl is not None:
        return _train_spbl(cfg, run_dir, bundle, device, resume is not None, stop_after, started)
    model = build_model(cfg.model, bundle.num_classes, bundle.channels, bundle.train_counts).to(device)
    trainer = Trainer(cfg, run_dir, bundle, model, device)
    resume_state = torch.load(run_dir / rundir.LAST, map_location=device, weights_only=False) if resume is not None else None
    if resume_state is not None:
        _check_checkpoint(resume_state, cfg, bundle.num_classes, run_dir / rundir.LAST)
        rundir.truncate_metrics(run_dir, resume_state["progress"]["global_epoch"])
    trainer.fit(resume_state, stop_after=stop_after)
    total_epochs = sum(s.epochs for s in trainer.stages)
    if trainer.progress.global_epoch < total_epochs:
        log.info("stopped after %d/%d epochs; continue with --resume %s", trainer.progress.global_epoch, total_epochs, run_dir)
        return TrainResult(run_dir, None, finished=False)
    progress = trainer.progress
    record = {"best_epoch": progress.best_epoch, "best_val_score": progress.best_score, "epochs": progress.global_epoch}
    results = finalize(run_dir, cfg, bundle, trainer.device, trainer.eval_pipeline, record, train_seconds=time.perf_counter() - started)
    return TrainResult(run_dir, results, finished=True)


def _train_spbl(cfg: Config, run_dir: Path, bundle: Any, device: torch.device, resume: bool, stop_after: int | None, started: float) -> TrainResult:
    """SPBL's paces (each an engine run in ``run_dir/paces/<k>``), then the same final evaluation."""
    from .spbl import pipeline

    runner, finished = pipeline.run(cfg, run_dir, bundle, device, resume, stop_after)
    if not finished:
        log.info("SPBL stopped before its last pace; continue with --resume %s", run_dir)
        return TrainResult(run_dir, None, finished=False)
    spbl_record = pipeline.publish_final(cfg, run_dir, bundle, runner)
    last = rundir.read_json(pipeline.pace_dir(run_dir, spbl_record["paces"] - 1) / pipeline.PACE_RECORD)
    record = {
        "best_epoch": last["cnn_best_epoch"],
        "best_val_score": last["val_balanced_accuracy"],
        "epochs": spbl_record["paces"] * sum(s.epochs for s in cfg.resolved_stages()),
        "spbl": spbl_record,
    }
    results = finalize(run_dir, cfg, bundle, device, runner.eval_pipeline, record, train_seconds=time.perf_counter() - started)
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
    """What the data looked like to the model; predict decodes and normalises new images from it."""
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
    }


def _check_checkpoint(state: dict[str, Any], cfg: Config, num_classes: int, path: Path) -> None:
    if state.get("model_name") != cfg.model.name or state.get("num_classes") != num_classes:
        raise LongtailError(
            f"checkpoint '{path}' is from model '{state.get('model_name')}' with {state.get('num_classes')} classes, "
            f"but the config asks for '{cfg.model.name}' with {num_classes}; resume with the run's own config"
        )


# ------------------------------------------------------------------------------ final evaluation
def finalize(run_dir: Path, cfg: Config, bundle: Any, device: torch.device, eval_pipeline: Any, record: dict[str, Any], train_seconds: float) -> dict[str, Any]:
    """Evaluate the best checkpoint on validation and (once) on test; choose post-hoc strengths on validation.

    ``record`` holds what training knows (best_epoch, best_val_score, epochs, method extras) and
    goes into results.json as is.
    """
    from .engine import predict_dataset
    from .metrics import compute

    model = load_model(run_dir, cfg, bundle.num_classes, bundle.channels, bundle.train_counts, device)
    tta = _tta(cfg)
    counts = np.asarray(bundle.train_counts)
    kw = dict(train_counts=counts, class_names=bundle.class_names, shot_thresholds=cfg.eval.shot_thresholds)
    outputs = {}
    for split in ("val", "test"):
        dataset = getattr(bundle, split)
        if dataset is None:
            continue
        out = predict_dataset(model, dataset, eval_pipeline, device, cfg.data.eval_batch_size, cfg.train.precision, tta, cfg.data.num_workers)
        rundir.save_predictions(run_dir, split, out.logits, out.targets, out.ids, out.features)
        outputs[split] = out
    posthoc = choose_posthoc(cfg, model, outputs["val"], counts)
    rundir.write_json(run_dir / rundir.POSTHOC, posthoc)
    results: dict[str, Any] = {
        "name": cfg.name,
        "class_names": list(bundle.class_names),
        "train_counts": [int(c) for c in counts],
        "select_metric": cfg.train.select_metric,
        **record,
        "train_seconds": round(train_seconds, 1),
        "test_evaluated_once": True,
        "val": compute(outputs["val"].logits, outputs["val"].targets, **kw),
        "posthoc": posthoc,
    }
    if "test" in outputs and (outputs["test"].targets < 0).all():
        # a withheld test set (ISIC): its predictions are saved for a submission, no metrics
        results["test_unlabelled"] = {"images": len(outputs["test"].targets), "predictions": f"{rundir.PREDICTIONS}/test.npz"}
    elif "test" in outputs:
        test = outputs["test"]
        results["test"] = compute(test.logits, test.targets, **kw)
        if posthoc:
            adjusted = apply_posthoc_to(model, test, posthoc, counts)
            results["test_posthoc"] = compute(adjusted, test.targets, **kw)
    rundir.write_json(run_dir / rundir.RESULTS, results)
    try:
        from .report import write_report

        write_report(run_dir)
    except Exception as e:  # a report failure must never lose a finished run
        log.warning("the run finished but its report could not be written (%s); retry with `longtail report %s`", e, run_dir)
    return results


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

    path = Path(run_dir) / checkpoint
    if not path.is_file():
        raise LongtailError(f"no checkpoint '{path}'; the run has not validated yet (train it, or resume it)")
    state = torch.load(path, map_location=device, weights_only=False)
    _check_checkpoint(state, cfg, num_classes, path)
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
    return model


def evaluate(run_dir: str | Path, split: str = "test") -> dict[str, Any]:
    """Metrics of the best checkpoint on ``split`` ('val' or 'test'), recomputed from the data."""
    from .data import build_pipeline
    from .engine import predict_dataset, select_device
    from .metrics import compute

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    splits = rundir.read_json(run_dir / rundir.SPLITS) if (run_dir / rundir.SPLITS).is_file() else None
    bundle, _ = _build_data(cfg, splits)
    dataset = getattr(bundle, split, None)
    if dataset is None:
        raise LongtailError(f"this run's data has no '{split}' split; use --split val")
    device = select_device(cfg.train.device)
    model = load_model(run_dir, cfg, bundle.num_classes, bundle.channels, bundle.train_counts, device)
    pipeline = build_pipeline(cfg.data.eval_transforms, bundle.norm_mean, bundle.norm_std, train=False)
    out = predict_dataset(model, dataset, pipeline, device, cfg.data.eval_batch_size, cfg.train.precision, _tta(cfg), cfg.data.num_workers)
    rundir.save_predictions(run_dir, split, out.logits, out.targets, out.ids, out.features)
    counts = np.asarray(bundle.train_counts)
    result = compute(out.logits, out.targets, train_counts=counts, class_names=bundle.class_names, shot_thresholds=cfg.eval.shot_thresholds)
    posthoc = _read_posthoc(run_dir)
    if posthoc:
        result["posthoc"] = compute(apply_posthoc_to(model, out, posthoc, counts), out.targets, train_counts=counts, class_names=bundle.class_names, shot_thresholds=cfg.eval.shot_thresholds)
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


@torch.no_grad()
def predict(run_dir: str | Path, images: list[str | Path], out: str | Path | None = None, batch_size: int = 64) -> list[dict[str, Any]]:
    """Class probabilities for image files or folders with the run's best model and post-hoc setting.

    Returns one dict per image (``image`` + one probability per class name); writes a CSV when
    ``out`` is given. Decoding matches training exactly (same pre-processing and size).
    """
    from .data import build_pipeline, decode_image_file
    from .engine import autocast, select_device

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    meta = rundir.read_json(run_dir / DATA_META)
    class_names, counts = meta["class_names"], np.asarray(meta["train_counts"])
    device = select_device(cfg.train.device)
    model = load_model(run_dir, cfg, len(class_names), meta["channels"], counts, device)
    pipeline = build_pipeline(cfg.data.eval_transforms, meta["norm_mean"], meta["norm_std"], train=False)
    posthoc = _read_posthoc(run_dir)
    tta = _tta(cfg)
    # decode at the size training used (recorded in data.json when it came from the model's config)
    data_cfg = cfg.data.model_copy(update={"image_size": meta["image_size"]}) if cfg.data.image_size == "model" else cfg.data
    files = find_images(list(images))
    rows: list[dict[str, Any]] = []
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        x = torch.stack([decode_image_file(f, data_cfg, meta["channels"]) for f in chunk]).to(device)
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
        probs = torch.softmax(torch.as_tensor(logits_np), dim=1).numpy()
        for f, p in zip(chunk, probs):
            rows.append({"image": str(f), **{name: float(v) for name, v in zip(class_names, p)}})
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["image", *class_names])
            writer.writeheader()
            writer.writerows(rows)
    return rows
