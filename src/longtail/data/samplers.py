"""Training-set samplers for long-tailed data: real ``torch.utils.data.Sampler`` objects.

Every sampler is built as ``SAMPLERS.create(name, targets=..., seed=..., **kwargs)`` and

- draws from a private ``torch.Generator`` seeded with ``seed + epoch`` (never the global RNG), so the
  stream depends only on (seed, epoch) and is **identical on every rank**; shard it with
  :class:`DistributedShard`;
- has ``set_epoch(epoch)`` (the engine calls it at the start of every epoch), ``__len__`` and
  ``__iter__`` yielding dataset indices;
- exposes ``class_probabilities()``: the expected fraction of the stream drawn from each class, used
  by the tests (empirical frequencies converge to it) and handy for logging what a run trained on.

Class-aware samplers draw a class first and then a uniformly random sample of that class (with
replacement, as MBIT/BBN do). Drawing the class first also avoids ``torch.multinomial``'s 2^24
category limit on large datasets (ufoym/imbalanced-dataset-sampler#58): only C categories are drawn.
Classes absent from ``targets`` get probability 0.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from ..core.errors import ConfigError, DataError
from ..core.registry import SAMPLERS

__all__ = [
    "LongTailSampler",
    "InstanceSampler",
    "ClassAwareSampler",
    "ClassBalancedSampler",
    "SquareRootSampler",
    "ProgressiveSampler",
    "ReverseSampler",
    "EffectiveNumberSampler",
    "OversampleSampler",
    "DistributedShard",
    "build_sampler",
]


def _as_targets(targets: Any, name: str, labelled: bool) -> np.ndarray:
    """Validate ``targets`` as a non-empty 1-D int64 array (all >= 0 when ``labelled``)."""
    arr = np.asarray(targets)
    if arr.ndim != 1 or arr.size == 0:
        raise DataError(f"sampler '{name}': targets must be a non-empty 1-D array of class indices, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise DataError(f"sampler '{name}': targets must be integer class indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if labelled and arr.min() < 0:
        raise DataError(
            f"sampler '{name}': {int((arr < 0).sum())} training images are unlabelled (target -1); "
            f"remove them from the training split or use sampler 'instance'"
        )
    return arr


class LongTailSampler(Sampler[int], ABC):
    """Base class: holds targets, seed and epoch, and makes the per-(seed, epoch) generator."""

    name = "base"
    needs_labels = True

    def __init__(self, targets: Sequence[int] | np.ndarray, seed: int = 0) -> None:
        self.targets = _as_targets(targets, self.name, self.needs_labels)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the stream for ``epoch`` (and, for schedules, move along them)."""
        self.epoch = int(epoch)

    def _generator(self) -> torch.Generator:
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        return g

    @abstractmethod
    def _indices(self) -> torch.Tensor:
        ...

    @abstractmethod
    def class_probabilities(self) -> np.ndarray:
        """Expected fraction of the epoch's stream drawn from each class (length max(target)+1)."""

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices().tolist())

    @abstractmethod
    def __len__(self) -> int:
        ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self.targets)}, len={len(self)}, seed={self.seed}, epoch={self.epoch})"


@SAMPLERS.register("instance")
class InstanceSampler(LongTailSampler):
    """Instance-balanced: a uniform shuffle of all training images every epoch."""

    name = "instance"
    needs_labels = False

    def _indices(self) -> torch.Tensor:
        return torch.randperm(len(self.targets), generator=self._generator())

    def class_probabilities(self) -> np.ndarray:
        labelled = self.targets[self.targets >= 0]
        return np.bincount(labelled, minlength=int(self.targets.max()) + 1) / len(self.targets)

    def __len__(self) -> int:
        return len(self.targets)


class ClassAwareSampler(LongTailSampler):
    """Draw a class from ``class_probabilities()``, then a uniformly random image of that class."""

    def __init__(self, targets: Sequence[int] | np.ndarray, seed: int = 0, num_samples: int | None = None) -> None:
        super().__init__(targets, seed)
        if num_samples is not None and int(num_samples) < 1:
            raise ConfigError(f"sampler '{self.name}': num_samples must be >= 1 (or null for one pass = {len(self.targets)})")
        self.num_samples = int(num_samples) if num_samples is not None else len(self.targets)
        self.counts = np.bincount(self.targets)
        order = np.argsort(self.targets, kind="stable")
        self._by_class = torch.from_numpy(order)
        self._starts = torch.from_numpy(np.concatenate([[0], np.cumsum(self.counts)[:-1]]))
        self._counts_t = torch.from_numpy(self.counts)

    def _indices(self) -> torch.Tensor:
        g = self._generator()
        probs = torch.as_tensor(self.class_probabilities(), dtype=torch.float64)
        classes = torch.multinomial(probs, self.num_samples, replacement=True, generator=g)
        offsets = (torch.rand(self.num_samples, generator=g, dtype=torch.float64) * self._counts_t[classes]).long()
        return self._by_class[self._starts[classes] + offsets]

    def __len__(self) -> int:
        return self.num_samples


def _normalise(weights: np.ndarray) -> np.ndarray:
    weights = np.asarray(weights, dtype=np.float64)
    return weights / weights.sum()


@SAMPLERS.register("class_balanced")
class ClassBalancedSampler(ClassAwareSampler):
    """Class-balanced: every present class equally likely, then a random image of it (MBIT 'balance')."""

    name = "class_balanced"

    def class_probabilities(self) -> np.ndarray:
        return _normalise(self.counts > 0)


@SAMPLERS.register("square_root")
class SquareRootSampler(ClassAwareSampler):
    """Square-root sampling: class probability proportional to sqrt(n_c) (Mahajan et al. 2018)."""

    name = "square_root"

    def class_probabilities(self) -> np.ndarray:
        return _normalise(np.sqrt(self.counts))


@SAMPLERS.register("reverse")
class ReverseSampler(ClassAwareSampler):
    """Reversed sampling (BBN): class probability proportional to max_k n_k / n_c."""

    name = "reverse"

    def class_probabilities(self) -> np.ndarray:
        present = self.counts > 0
        w = np.zeros(len(self.counts))
        w[present] = self.counts.max() / self.counts[present]
        return _normalise(w)


@SAMPLERS.register("progressive")
class ProgressiveSampler(ClassAwareSampler):
    """Progressively-balanced sampling (Kang et al. 2020): instance- to class-balanced over training.

    ``p_c(t) = (1 - t/T) * n_c / N + (t/T) / C`` with ``t`` the 0-based epoch given to ``set_epoch``
    and ``T = max_epoch`` (clipped to [0, 1]): epoch 0 is instance-balanced, and the class-balanced end
    point is reached at ``t = T``, so with 0-based epochs the last epoch uses ``t/T = (T-1)/T``.
    """

    name = "progressive"

    def __init__(
        self,
        targets: Sequence[int] | np.ndarray,
        seed: int = 0,
        max_epoch: int | None = None,
        num_samples: int | None = None,
    ) -> None:
        super().__init__(targets, seed, num_samples)
        if max_epoch is None or int(max_epoch) < 1:
            raise ConfigError("sampler 'progressive': max_epoch must be a positive number of epochs (the engine passes the stage length)")
        self.max_epoch = int(max_epoch)

    def class_probabilities(self) -> np.ndarray:
        t = min(max(self.epoch / self.max_epoch, 0.0), 1.0)
        instance = _normalise(self.counts)
        balanced = _normalise(self.counts > 0)
        return (1.0 - t) * instance + t * balanced


@SAMPLERS.register("effective_number")
class EffectiveNumberSampler(ClassAwareSampler):
    """Multinomial sampling with replacement, per-image weight = class-balanced weight (1-beta)/(1-beta^n_c).

    This is HMLoss's ``ImbalancedDatasetSampler``. Per-image probability ``w_{y_i} / sum_j w_{y_j}``
    is drawn exactly, as class probability ``n_c w_c / sum_k n_k w_k`` followed by a uniform image of
    the class.
    """

    name = "effective_number"

    def __init__(
        self,
        targets: Sequence[int] | np.ndarray,
        seed: int = 0,
        beta: float = 0.9999,
        num_samples: int | None = None,
    ) -> None:
        if not 0.0 <= float(beta) < 1.0:
            raise ConfigError(f"sampler 'effective_number': beta must be in [0, 1), got {beta}")
        super().__init__(targets, seed, num_samples)
        self.beta = float(beta)

    def class_probabilities(self) -> np.ndarray:
        present = self.counts > 0
        w = np.zeros(len(self.counts))
        w[present] = (1.0 - self.beta) / (1.0 - self.beta ** self.counts[present])
        return _normalise(self.counts * w)


@SAMPLERS.register("oversample")
class OversampleSampler(LongTailSampler):
    """MBIT over-sampling: replicate every class to exactly max_k n_k images, shuffled each epoch.

    Each image of class c appears ``floor(max/n_c)`` times, and the first ``max mod n_c`` images of the
    class (in dataset order) once more; the epoch has ``C_present * max`` indices.
    """

    name = "oversample"

    def __init__(self, targets: Sequence[int] | np.ndarray, seed: int = 0) -> None:
        super().__init__(targets, seed)
        counts = np.bincount(self.targets)
        top = int(counts.max())
        pool = []
        for c in np.flatnonzero(counts):
            members = np.flatnonzero(self.targets == c)
            reps, rem = divmod(top, len(members))
            pool.append(np.concatenate([np.tile(members, reps), members[:rem]]))
        self.counts = counts
        self._pool = torch.from_numpy(np.concatenate(pool))

    def _indices(self) -> torch.Tensor:
        return self._pool[torch.randperm(len(self._pool), generator=self._generator())]

    def class_probabilities(self) -> np.ndarray:
        return _normalise(self.counts > 0)

    def __len__(self) -> int:
        return len(self._pool)


class DistributedShard(Sampler[int]):
    """Rank ``rank``'s share of any sampler's stream, for distributed data parallel training.

    The wrapped sampler must produce the same stream on every rank (all longtail samplers do). The
    stream is split round-robin: rank r gets positions r, r + W, r + 2W, ... As in
    ``torch.utils.data.DistributedSampler``, when the stream length is not divisible by the world
    size W it is padded by repeating its first indices (every rank gets ``ceil(len/W)`` indices), or,
    with ``drop_last=True``, its tail is dropped (every rank gets ``floor(len/W)``).
    """

    def __init__(self, sampler: Sampler[int], rank: int, world_size: int, drop_last: bool = False) -> None:
        if int(world_size) < 1:
            raise ConfigError(f"DistributedShard: world_size must be >= 1, got {world_size}")
        if not 0 <= int(rank) < int(world_size):
            raise ConfigError(f"DistributedShard: rank must be in [0, {world_size}), got {rank}")
        self.sampler = sampler
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.drop_last = bool(drop_last)
        total = len(sampler)  # type: ignore[arg-type]
        self.num_samples = total // self.world_size if self.drop_last else math.ceil(total / self.world_size)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        stream = list(self.sampler)
        total_size = self.num_samples * self.world_size
        if total_size > len(stream):
            pad = total_size - len(stream)
            stream += (stream * math.ceil(pad / max(len(stream), 1)))[:pad]
        else:
            stream = stream[:total_size]
        return iter(stream[self.rank : total_size : self.world_size])

    def __len__(self) -> int:
        return self.num_samples


def build_sampler(spec: Any, targets: Sequence[int] | np.ndarray, seed: int, max_epoch: int | None = None) -> LongTailSampler:
    """Build the sampler of a config entry (``spec.name``, ``spec.kwargs``) for these training targets.

    ``targets`` and ``seed`` come from the run, never from the entry; ``max_epoch`` is passed to the
    samplers whose constructor takes it (``progressive``) unless the entry sets it.
    """
    kwargs = dict(spec.kwargs)
    for reserved in ("targets", "seed"):
        if reserved in kwargs:
            raise ConfigError(f"sampler.{reserved}: set by the run (training labels, top-level seed); remove it from the sampler entry")
    accepted = SAMPLERS.accepted_kwargs(spec.name)
    if max_epoch is not None and "max_epoch" not in kwargs and (accepted is None or "max_epoch" in accepted):
        kwargs["max_epoch"] = max_epoch
    return SAMPLERS.create(spec.name, targets=targets, seed=seed, **kwargs)
