"""Running a model over a whole split: logits, targets, ids and features, with TTA; the validation loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.errors import LongtailError
from ..core.schema import Config
from . import distributed
from .batches import batches, meta_kwargs
from .device import as_memory_format, autocast


# --------------------------------------------------------------------------------- evaluation
@dataclass
class Outputs:
    logits: np.ndarray
    targets: np.ndarray
    ids: list[str]
    features: np.ndarray | None


@torch.no_grad()
def predict_dataset(model: nn.Module, dataset: Any, pipeline: Any, device: torch.device, batch_size: int, precision: str = "32", tta: Any = None, num_workers: int = 0, channels_last: bool = False) -> Outputs:
    """Logits (float32), targets and penultimate features for every item of ``dataset``, in order."""
    model.eval()
    if len(dataset) == 0:
        raise LongtailError("cannot evaluate an empty split; check the data config (max_per_class, split fractions)")
    logits, feats, targets = [], [], []
    # under DDP each rank predicts its share; the rows are gathered back in dataset order below
    for x, y, meta in batches(dataset, distributed.eval_indices(len(dataset)), batch_size, num_workers, seed=0):
        x = as_memory_format(pipeline.batch(x.to(device, non_blocking=True)), channels_last)
        extra = meta_kwargs(None if meta is None else meta.to(device, non_blocking=True))  # model.metadata runs only
        with autocast(device, precision, model):
            if tta is not None:
                out = tta.predict(lambda v: model(v, **extra), x)  # every view of an image keeps its metadata
                f = None
            else:
                out, f = model(x, return_features=True, **extra)
        logits.append(out.float().cpu())
        if f is not None:
            feats.append(f.float().cpu())
        targets.append(y)
    if not logits:
        raise LongtailError("cannot evaluate an empty split; check the data config (max_per_class, split fractions)")
    n = len(dataset)
    return Outputs(
        logits=distributed.gather_in_order(torch.cat(logits), n).numpy(),
        targets=distributed.gather_in_order(torch.cat(targets), n).numpy(),
        ids=list(getattr(dataset, "ids", [str(i) for i in range(n)])),
        features=distributed.gather_in_order(torch.cat(feats), n).numpy() if feats else None,
    )


def per_class_accuracy(logits: np.ndarray, targets: np.ndarray, num_classes: int) -> np.ndarray:
    """Recall of each class (NaN for a class absent from ``targets``)."""
    pred = logits.argmax(1)
    acc = np.full(num_classes, np.nan)
    for c in range(num_classes):
        mask = targets == c
        if mask.any():
            acc[c] = float((pred[mask] == c).mean())
    return acc


def cross_entropy(logits: Any, targets: Any) -> float | None:
    """Mean plain cross-entropy (natural log) of labelled rows: the validation loss, comparable across
    methods (a method's training loss may carry margins, weights or a prior shift); None without labels."""
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    keep = y >= 0
    if not bool(keep.any()):
        return None
    return float(nn.functional.cross_entropy(z[keep], y[keep]))


def build_tta(cfg: Config) -> Any:
    """The run's test-time augmentation (``eval.tta``), or None."""
    if cfg.eval.tta is None:
        return None
    from ..core.registry import METHODS

    tta = METHODS.create(cfg.eval.tta.name, **cfg.eval.tta.kwargs)
    if cfg.eval.unk_class == "sigmoid":
        tta.activation = "sigmoid"
    return tta
