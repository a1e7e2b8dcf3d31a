"""SADE's test-time self-supervised aggregation: expert weights learned on one test set's unlabelled images.

Zhang et al. (NeurIPS 2022; Vanint/SADE-AgnosticLT ``test_training_cifar.py``) train three experts
for different test priors (losses/sade.py) and, when the test prior is unknown, choose how to combine
them on the test images themselves, without labels: raw weights ``a`` (E values, all ``1/E`` at the
start), ``w = softmax(a)``, the aggregate ``z = sum_e w_e z_e`` of two randomly augmented views of each
image, and SGD on ``a`` that maximises the mean cosine similarity of the two views' softmax
predictions. The model is frozen in eval mode (BatchNorm statistics unchanged); only ``a`` learns.
After each epoch training stops once a weight, rounded to two decimals as the official prints it,
falls below ``min_weight``. The result goes to :meth:`ExpertHeads.set_expert_weights`.

The test-agnostic protocol (inference/test_agnostic.py) runs this once per test set. The step sees
the images it will be scored on, never their labels: it is transductive by design, as in the paper.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import ConfigError, LongtailError
from ..models.experts import ExpertHeads
from .batches import batches
from .device import as_memory_format, autocast
from .inference import predict_expert_outputs

#: the official two-view augmentation (test_training_cifar.py ``train_trsfm`` in ``TwoCropsTransform``)
SADE_CIFAR_VIEWS: tuple[dict[str, Any], ...] = (
    {"name": "random_crop", "size": 32, "padding": 4},
    {"name": "color_jitter", "brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1, "p": 0.8},
    {"name": "random_grayscale", "p": 0.2},
    {"name": "gaussian_blur", "sigma": [0.1, 2.0], "p": 0.2},
    {"name": "hflip", "p": 0.5},
)


def default_views(side: int) -> tuple[dict[str, Any], ...]:
    """:data:`SADE_CIFAR_VIEWS` for images ``side`` pixels wide: the crop at that size with a padding of side / 8 (4 at 32)."""
    crop = {"name": "random_crop", "size": int(side), "padding": max(1, int(side) // 8)}
    return (crop, *SADE_CIFAR_VIEWS[1:])


@dataclass(frozen=True)
class AggregationSettings:
    """The test-time optimisation: the official CIFAR values (``configs/test_time_cifar100_ir100_sade.json``)."""

    epochs: int = 5
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    batch_size: int = 128
    min_weight: float = 0.05

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"test-time aggregation: epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")
        if not (self.lr > 0 and self.momentum >= 0 and self.weight_decay >= 0 and 0 <= self.min_weight < 1):
            raise ConfigError("test-time aggregation: lr must be > 0, momentum and weight_decay >= 0, min_weight in [0, 1)")


@dataclass
class AggregationFit:
    """What the test-time step learned: the normalised expert weights, the epochs it ran, the weights after each."""

    weights: np.ndarray
    epochs: int
    history: list[list[float]] = field(default_factory=list)


def expert_heads(model: nn.Module) -> ExpertHeads:
    """The model's :class:`ExpertHeads`; a single-head model has no experts to weigh (one-line error)."""
    head = getattr(model, "head", None)
    if not isinstance(head, ExpertHeads):
        raise LongtailError(f"test-time aggregation weighs the experts of a multi-expert model, but this model has a single head "
                            f"({type(head).__name__}); train one with model.name: ride_resnet32 (the SADE recipe: configs/cifar10_lt/sade.yaml)")
    return head


def expert_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """N x E x C per-expert logits of a batch (float32)."""
    return model(x, return_features=True, return_experts=True).experts.float()


def fit_expert_weights(model: nn.Module, dataset: Any, views: Any, device: torch.device, settings: AggregationSettings = AggregationSettings(),
                       seed: int = 0, precision: str = "32", channels_last: bool = False) -> AggregationFit:
    """Learn the expert weights on ``dataset``'s images (labels unused) with two ``views`` of every image.

    ``views`` is a train-mode pipeline (``data.build_pipeline(..., train=True)``) of batched ops; its
    randomness and the batch order come from ``seed`` and leave the caller's RNG as it was."""
    heads = expert_heads(model)
    check_inputs(dataset, views)
    model.eval()
    raw = torch.full((heads.num_experts,), 1.0 / heads.num_experts, requires_grad=True)  # the official fill_(1/3)
    optimizer = torch.optim.SGD([raw], lr=settings.lr, momentum=settings.momentum, nesterov=settings.nesterov, weight_decay=settings.weight_decay)
    history: list[list[float]] = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for epoch in range(settings.epochs):
            for first, second in view_pairs(model, dataset, views, device, settings.batch_size, seed + epoch, precision, channels_last):
                loss = -view_agreement(first, second, raw)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            weights = torch.softmax(raw.detach(), 0).numpy()
            history.append([float(w) for w in weights])
            if (np.round(weights, 2) < settings.min_weight).any():
                break
    return AggregationFit(weights=np.asarray(history[-1], dtype=np.float64), epochs=len(history), history=history)


def view_pairs(model: nn.Module, dataset: Any, views: Any, device: torch.device, batch_size: int, seed: int, precision: str = "32",
               channels_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One pass over ``dataset`` in the order ``seed`` shuffles (the official ``shuffle=True``): the N x E x C expert
    logits (float32, on the CPU) of two random views of each batch, computed without gradients (the experts are fixed)."""
    order = np.random.RandomState(seed).permutation(len(dataset))
    for x, _, _ in batches(dataset, order, batch_size, 0, seed=seed):
        x = x.to(device)
        with torch.no_grad(), autocast(device, precision, model):
            first = expert_logits(model, as_memory_format(views.batch(x), channels_last)).cpu()
            second = expert_logits(model, as_memory_format(views.batch(x), channels_last)).cpu()
        yield first, second


def expert_agreements(model: nn.Module, dataset: Any, views: Any, device: torch.device, batch_size: int = 128, seed: int = 0,
                      precision: str = "32", channels_last: bool = False) -> np.ndarray:
    """Each expert's view agreement alone (its weight 1, the others 0) over one pass of ``dataset``, E values.

    The objective the aggregation climbs, read at the corners of the simplex: it says which expert the
    step is drawn to on these images (the one whose predictions change least between two views), whatever
    that expert's accuracy; the caller's RNG is left as it was."""
    heads = expert_heads(model)
    check_inputs(dataset, views)
    model.eval()
    total, count = np.zeros(heads.num_experts), 0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for first, second in view_pairs(model, dataset, views, device, batch_size, seed, precision, channels_last):
            for e in range(heads.num_experts):
                total[e] += float(weighted_agreement(first, second, F.one_hot(torch.tensor(e), heads.num_experts).float())) * len(first)
            count += len(first)
    return total / count


def check_inputs(dataset: Any, views: Any) -> None:
    """One-line errors for what the test-time step cannot use: per-sample views, an empty test set."""
    if getattr(views, "sample", None) is not None:
        raise ConfigError("test-time aggregation views must be batched transforms (random_crop, color_jitter, random_grayscale, "
                          "gaussian_blur, hflip, ...); drop the per-sample ones")
    if len(dataset) == 0:
        raise LongtailError("test-time aggregation needs images: the test set is empty")


def view_agreement(first: torch.Tensor, second: torch.Tensor, raw_weights: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity of the two views' softmax predictions under ``softmax(raw_weights)`` (SADE's objective)."""
    return weighted_agreement(first, second, torch.softmax(raw_weights, 0))


def weighted_agreement(first: torch.Tensor, second: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity of the two views' softmax predictions of the expert logits summed under the weights ``w``."""
    p1 = F.softmax(torch.einsum("e,nec->nc", w, first), dim=1)
    p2 = F.softmax(torch.einsum("e,nec->nc", w, second), dim=1)
    return F.cosine_similarity(p1, p2, dim=1, eps=1e-6).mean()


def predict_experts(model: nn.Module, dataset: Any, pipeline: Any, device: torch.device, batch_size: int, precision: str = "32",
                    channels_last: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-expert logits (N x E x C, float32) and targets of every item of ``dataset``, in order."""
    expert_heads(model)
    experts, _, targets = predict_expert_outputs(model, dataset, pipeline, device, batch_size, precision, channels_last)
    return experts, targets


def aggregate(experts: np.ndarray, weights: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """N x C logits from N x E x C expert logits: the mean, or the weighted sum under ``weights``."""
    if weights is None:
        return experts.mean(axis=1)
    return np.einsum("e,nec->nc", np.asarray(weights, dtype=experts.dtype), experts)
