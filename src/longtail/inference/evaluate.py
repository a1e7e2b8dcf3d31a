"""Scoring a trained run's checkpoint on one of its splits, recomputed from the data.

The split indices and data.json saved at training time make the data the same the run saw,
so these numbers can be compared with results.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import rundir
from ..core.errors import LongtailError
from ..training.finalize import apply_posthoc_to
from ..training.loading import build_run_data, checkpoint_file, load_model, load_run_config, read_posthoc, read_trust, run_checkpoint, saved_splits
from ..training.metadata import attach_saved


def evaluate(run_dir: str | Path, split: str = "test", checkpoint: str = "best") -> dict[str, Any]:
    """:func:`longtail.api.evaluate`: metrics of ``checkpoint`` on ``split``, saving its predictions.

    ``last`` of an SPBL run is its last pace's final-epoch CNN with the run's final classifier
    (:func:`longtail.training.loading.run_checkpoint`)."""
    checkpoint_file(checkpoint)  # an unknown name fails before any data is read
    from ..engine.inference import build_tta, predict_dataset
    from ..evaluation.intervals import resampling_groups, run_intervals
    from ..evaluation.scoring import split_metrics

    run_dir = Path(run_dir)
    cfg, bundle, model, pipeline, device = load_for_scoring(run_dir, checkpoint)
    dataset = getattr(bundle, split, None)
    if dataset is None:
        raise LongtailError(f"this run's data has no '{split}' split; use --split val")
    out = predict_dataset(model, dataset, pipeline, device, cfg.data.eval_batch_size, cfg.train.precision, build_tta(cfg), cfg.data.num_workers, cfg.train.channels_last)
    counts = np.asarray(bundle.train_counts)
    posthoc = read_posthoc(run_dir) if checkpoint == "best" else {}
    corrected = apply_posthoc_to(model, out, posthoc, counts) if posthoc else None
    units = resampling_groups(cfg.eval.bootstrap, dataset, bundle)
    rundir.save_predictions(run_dir, split if checkpoint == "best" else f"{split}_{checkpoint}", out.logits, out.targets, out.ids, out.features,
                            units, corrected)
    result = split_metrics(out.logits, out.targets, counts, bundle.class_names, cfg.eval)
    if posthoc:
        result["posthoc"] = split_metrics(corrected, out.targets, counts, bundle.class_names, cfg.eval)
    if (out.targets >= 0).any():
        result["intervals"] = run_intervals(out.logits, out.targets, corrected, units, cfg.eval.bootstrap, split)
    fitted = read_trust(run_dir) if checkpoint == "best" else {}
    if fitted and (out.targets >= 0).any():
        from ..evaluation import trust

        result["trust"] = trust.summarise(corrected if posthoc else out.logits, out.targets, fitted, list(bundle.class_names))
    return result


def load_for_scoring(run_dir: Path, checkpoint: str = "best", keep_pools: bool = False) -> tuple[Any, Any, Any, Any, Any]:
    """(config, data bundle, model, eval pipeline, device) of a run, its data rebuilt from the saved splits
    (``keep_pools``: the bundle keeps the source's native splits too)."""
    from ..data import build_pipeline
    from ..engine.device import select_device

    cfg = load_run_config(run_dir)
    checkpoint_path = run_checkpoint(run_dir, cfg, checkpoint)
    bundle, _ = build_run_data(cfg, saved_splits(run_dir, cfg), keep_pools=keep_pools)
    attach_saved(run_dir, cfg, bundle)  # model.metadata: the inputs the run's saved encoding gives (no-op without)
    device = select_device(cfg.train.device)
    model = load_model(run_dir, cfg, bundle.num_classes, bundle.channels, bundle.train_counts, device, checkpoint=checkpoint_path)
    pipeline = build_pipeline(cfg.data.eval_transforms, bundle.norm_mean, bundle.norm_std, train=False)
    return cfg, bundle, model, pipeline, device
