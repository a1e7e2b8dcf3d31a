"""Reading a run back: its config, data, splits and checkpoints, checked against each other.

Training, evaluation, prediction and export all rebuild the same things from a run directory;
they do it here so each use refuses a mismatched checkpoint or class list with the same one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import rundir
from ..catalog.check import load_config
from ..core.errors import LongtailError
from ..core.schema import Config
from .metadata import read_encoding, width

#: what the data looked like to the model (classes, channels, size, normalisation), beside config.yaml
DATA_META = "data.json"
#: the entries of data.json every reader needs (older runs may lack the rest)
DATA_META_KEYS = ("class_names", "train_counts", "channels", "norm_mean", "norm_std")
#: the entries of splits.json that make it a splits file (data.build.splits_from_json checks the rest)
SPLITS_KEYS = ("format", "sizes", "train")

#: ``evaluate(checkpoint=...)`` names -> checkpoint files of a run directory
CHECKPOINTS = {"best": rundir.BEST, "last": rundir.LAST}


def load_run_config(run_dir: str | Path) -> Config:
    run_dir = Path(run_dir)
    if not (run_dir / rundir.CONFIG).is_file():
        raise LongtailError(f"'{run_dir}' is not a longtail run directory (no {rundir.CONFIG}); pass the folder `longtail train` created")
    return load_config(run_dir / rundir.CONFIG)


def load_model(run_dir: Path, cfg: Config, num_classes: int, channels: int, counts: Any, device: torch.device, checkpoint: str = rundir.BEST) -> Any:
    """Rebuild the architecture (including stage head swaps) and load a checkpoint's weights.

    Under ``train.ema`` both checkpoints give the averaged weights, the ones validation scored:
    best.pt holds them as its model, last.pt beside the trained weights it resumes from.
    """
    from ..models import build_model, load_checkpoint_weights
    from ..rundir.checkpoint import load_checkpoint

    path = Path(run_dir) / checkpoint
    if not path.is_file():
        raise LongtailError(f"no checkpoint '{path}'; the run has not validated yet (train it, or resume it)")
    state = load_checkpoint(path, map_location=device)
    names = read_data_meta(run_dir)["class_names"] if (Path(run_dir) / DATA_META).is_file() else None
    check_checkpoint(state, cfg, num_classes, path, names)
    # the checkpoint holds every weight: never fetch or read pretrained weights again here
    model_cfg = cfg.model.model_copy(update={"pretrained": False, "weights": None})
    metadata_dim = width(read_encoding(run_dir, cfg))  # model.metadata: the input width the run's encoding gives
    model = build_model(model_cfg, num_classes, channels, np.asarray(counts), metadata_dim=metadata_dim).to(device)
    for head in state.get("heads", []):
        if head is not None:
            model.set_head(head, class_counts=np.asarray(counts))
    ema = state.get("ema")
    load_checkpoint_weights(model, ema["model"] if isinstance(ema, dict) and "model" in ema else state["model"], str(path))
    if cfg.spbl is not None:  # an SPBL model's head is its feature classifier
        from ..spbl.pipeline import attach_classifier

        attach_classifier(model, Path(run_dir))
    model.to(device).eval()
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def checkpoint_file(name: str) -> str:
    """The run-relative file of checkpoint ``name`` ('best' or 'last'); a one-line error otherwise."""
    if name not in CHECKPOINTS:
        raise LongtailError(f"checkpoint '{name}' is not one of {', '.join(CHECKPOINTS)}; use best (chosen on validation) or last (the final epoch)")
    return CHECKPOINTS[name]


def run_checkpoint(run_dir: Path, cfg: Config, name: str) -> str:
    """The run-relative file of checkpoint ``name`` for this run; a one-line error where it has none.

    An SPBL run keeps its CNN checkpoints per pace (``paces/<k>/checkpoints/``) and publishes only
    the last pace's best CNN as ``checkpoints/best.pt``, so its ``last`` is the last pace's
    ``last.pt``: the CNN after the final epoch of training, with the run's final classifier as the
    head (:func:`load_model` attaches it, as for ``best``). That classifier was fitted on the
    features of the pace's best CNN (and earlier paces' CNNs); on the final epoch's features it
    scores the model training ended with, the same as ``best`` when the best epoch is the last.
    """
    file = checkpoint_file(name)
    if cfg.spbl is None or name != "last":
        return file
    from ..spbl.pipeline import FINAL_CLASSIFIER, PACE_RECORD, pace_dir, pace_ratios

    last = len(pace_ratios(cfg)) - 1
    folder = pace_dir(Path(run_dir), last)
    if not (folder / PACE_RECORD).is_file() or not (Path(run_dir) / FINAL_CLASSIFIER).is_file():
        raise LongtailError(f"'{run_dir}' is an SPBL run whose last pace ({last}) has not finished, so there is no final classifier "
                            "to score its last checkpoint with; finish the run with --resume")
    return f"{rundir.PACES}/{last}/{rundir.LAST}"


def check_checkpoint(state: dict[str, Any], cfg: Config, num_classes: int | None, path: Path, class_names: list[str] | None = None) -> None:
    """Refuse a checkpoint of another architecture, model setting or class list (one line)."""
    from ..rundir.checkpoint import check_for_model

    check_for_model(state, path, cfg.model, num_classes, class_names)


def check_item_kind(model: Any, bundle: Any, name: str) -> None:
    """Clips need a 3D backbone and images a 2D one: say so in one line instead of a conv shape error."""
    clips = bool(getattr(bundle.train, "frames_per_clip", None))
    takes_clips = bool(getattr(getattr(model, "backbone", None), "takes_clips", False))
    if clips and not takes_clips:
        raise LongtailError(f"model '{name}' takes images but data.source gives clips (C x T x H x W); "
                            "use a 3D backbone: r3d_18, mc3_18, r2plus1d_18, resnext3d_101 or resnext3d")
    if takes_clips and not clips:
        raise LongtailError(f"model '{name}' is a 3D backbone for clips but data.source gives images; use an image backbone or a clip source (egtea)")


def read_data_meta(run_dir: str | Path) -> dict[str, Any]:
    """The run's data.json; a missing, damaged or incomplete one is a one-line error."""
    return rundir.read_json(Path(run_dir) / DATA_META, keys=DATA_META_KEYS)


def read_trust(run_dir: Path) -> dict[str, Any]:
    """The trust fit chosen on validation (temperature, conformal, abstention; {} when the run has none)."""
    path = Path(run_dir) / rundir.TRUST
    if not path.is_file():
        return {}
    fitted = rundir.read_json(path)
    temperature = fitted.get("temperature")
    if temperature is not None and not isinstance(temperature, dict) or isinstance(temperature, dict) and "value" not in temperature:
        raise rundir.damaged(path, "its temperature entry has no value")
    return fitted


def read_posthoc(run_dir: Path) -> dict[str, Any]:
    """The post-hoc strengths chosen on validation ({} when the run uses none); each entry holds a numeric tau."""
    path = Path(run_dir) / rundir.POSTHOC
    posthoc = rundir.read_json(path) if path.is_file() else {}
    for name, entry in posthoc.items():
        if not isinstance(entry, dict) or isinstance(entry.get("tau"), bool) or not isinstance(entry.get("tau"), (int, float)):
            raise rundir.damaged(path, f"entry '{name}' has no numeric tau")
    return posthoc


def saved_splits(run_dir: Path, cfg: Config) -> dict[str, Any] | None:
    """The split indices to reuse: the run's own, or data.split.file's (None: split afresh)."""
    if (run_dir / rundir.SPLITS).is_file():
        return rundir.read_json(run_dir / rundir.SPLITS, keys=SPLITS_KEYS)
    if cfg.data.split.file:
        path = Path(cfg.data.split.file)
        if not path.is_file():
            raise LongtailError(f"data.split.file '{path}' not found; point it at the splits.json of an earlier run")
        return rundir.read_json(path, keys=SPLITS_KEYS)
    return None


def build_run_data(cfg: Config, splits: dict[str, Any] | None, keep_pools: bool = False) -> tuple[Any, Any]:
    """The run's data, with ``data.image_size: model`` / ``data.normalize: model`` taken from the backbone
    (``keep_pools``: with the source's native splits, ``data.build.build_data``)."""
    from ..data import build_data
    from ..models import data_for_model

    data_cfg, spec = data_for_model(cfg.data, cfg.model)
    stats = (spec.mean, spec.std) if spec is not None and cfg.data.normalize == "model" else None
    return build_data(data_cfg, cfg.seed, splits=splits, model_stats=stats, keep_pools=keep_pools), spec


def data_meta(bundle: Any, cfg: Config, spec: Any) -> dict[str, Any]:
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
