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


@torch.no_grad()
def predict_expert_outputs(model: nn.Module, dataset: Any, pipeline: Any, device: torch.device, batch_size: int, precision: str = "32",
                           channels_last: bool = False) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """A multi-expert model over ``dataset``, in order: per-expert logits (N x E x C, float32), router logits
    (N x (E - 1); None without an active router, models/router.py) and targets."""
    model.eval()
    experts, routers, targets = [], [], []
    for x, y, _ in batches(dataset, range(len(dataset)), batch_size, 0, seed=0):
        x = as_memory_format(pipeline.batch(x.to(device, non_blocking=True)), channels_last)
        with autocast(device, precision, model):
            out = model(x, return_features=True, return_experts=True)
        experts.append(out.experts.float().cpu())
        if out.router is not None:
            routers.append(out.router.float().cpu())
        targets.append(torch.as_tensor(y).cpu())
    if not experts:
        raise LongtailError("cannot evaluate an empty split; check the data config")
    router = torch.cat(routers).numpy() if routers else None
    return torch.cat(experts).numpy(), router, torch.cat(targets).numpy()


def routing_summary(model: nn.Module, dataset: Any, pipeline: Any, device: torch.device, batch_size: int, precision: str = "32",
                    channels_last: bool = False) -> dict[str, Any] | None:
    """How far RIDE's router lets the images of ``dataset`` go (None without an active router, models/router.py).

    ``experts_per_image`` is the mean number of experts an image uses, ``reach[e]`` the share of images
    that use expert e, and ``mflops_per_image`` what the routed model would cost per image had the skipped
    experts not run (the shared trunk plus the mean number of expert branches; ``all_experts`` is the cost
    with every branch), counted with ``torch.utils.flop_counter`` on one image. Here every branch runs
    and the routing masks them, so this saving is counted, not timed."""
    from ..models.router import experts_used

    head = getattr(model, "head", None)
    router = getattr(head, "router", None)
    if router is None or not bool(router.active) or len(dataset) == 0:
        return None
    _, router_logits, _ = predict_expert_outputs(model, dataset, pipeline, device, batch_size, precision, channels_last)
    counts = experts_used(torch.as_tensor(router_logits)).numpy()
    first = as_memory_format(pipeline.batch(dataset[0][0].unsqueeze(0).to(device)), channels_last)
    trunk, branch = _branch_costs(model, first)
    experts = int(head.num_experts)  # type: ignore[union-attr]
    return {
        "experts": experts,
        "experts_per_image": float(counts.mean()),
        "reach": [float((counts > e).mean()) for e in range(experts)],
        "mflops_per_image": (trunk + float(counts.mean()) * branch) / 1e6,
        "mflops_all_experts": (trunk + experts * branch) / 1e6,
    }


def _branch_costs(model: nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """FLOPs of a multi-expert backbone's shared trunk and of one expert branch, for the one image ``x``."""
    from torch.utils.flop_counter import FlopCounterMode

    backbone = model.backbone  # type: ignore[union-attr]
    with FlopCounterMode(display=False) as trunk_counter:
        shared = backbone.trunk.forward_maps(x.float())
    with FlopCounterMode(display=False) as branch_counter:
        backbone.experts[0](shared)
    return float(trunk_counter.get_total_flops()), float(branch_counter.get_total_flops())


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
