"""Batches from a dataset in a given index order, with seeded DataLoader workers.

A batch is a :class:`Batch`: uint8 images, int64 targets and, for a ``model.metadata`` run, the
encoded metadata rows (``meta``, float32 N x M; None for every image-only dataset). :func:`batches`
is what the loop, validation and inference iterate; :func:`iterate_batches` is its (images, targets)
view for code that needs only those.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import torch

from ..core.errors import ConfigError


class Batch(NamedTuple):
    """One batch: images (uint8), targets (int64) and the encoded metadata (float32 N x M, or None)."""

    images: torch.Tensor
    targets: torch.Tensor
    meta: torch.Tensor | None = None


def stage_size(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """A train batch at its stage's ``image_size`` (``stages[].image_size``: progressive resizing), resized
    after the train pipeline (antialiased bilinear, as the ``resize`` transform); unchanged when None."""
    if size is None or tuple(x.shape[-2:]) == (size, size):
        return x
    if x.dim() != 4:
        raise ConfigError("stages[].image_size resizes image batches; a clip run keeps data.image_size: remove it from the stage")
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def meta_kwargs(meta: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """``{"meta": meta}`` for a metadata batch, ``{}`` otherwise: image-only calls keep their old signature."""
    return {} if meta is None else {"meta": meta}


# ------------------------------------------------------------------------------------ batches
def iterate_batches(dataset: Any, indices: Any, batch_size: int, num_workers: int, seed: int, drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (uint8 images, targets) batches in the order given by ``indices`` (a sampler or list)."""
    for batch in batches(dataset, indices, batch_size, num_workers, seed, drop_last):
        yield batch.images, batch.targets


def batches(dataset: Any, indices: Any, batch_size: int, num_workers: int, seed: int, drop_last: bool = False) -> Iterator[Batch]:
    """Yield :class:`Batch` es in the order given by ``indices`` (a sampler or list).

    In-memory datasets without a per-sample transform are sliced directly (one tensor index per
    batch, no per-item Python overhead), on the device their images live on (a GPU for
    ``data.device_resident``: images and targets come out there); everything else goes through a
    seeded DataLoader.
    """
    images = getattr(dataset, "images", None)
    meta = getattr(dataset, "meta", None)
    if isinstance(images, torch.Tensor) and getattr(dataset, "sample_transform", None) is None and num_workers == 0:
        order = torch.as_tensor(list(iter(indices)), dtype=torch.long)
        targets = torch.as_tensor(np.asarray(dataset.targets), dtype=torch.long)
        # subsets are index views into a shared tensor: item i is images[index[i]]
        view = getattr(dataset, "index", None)
        rows = order if view is None else torch.as_tensor(np.asarray(view), dtype=torch.long)[order]
        # one copy per epoch of the order to where the images are (none on the CPU), not one per batch
        rows, targets, on_device = rows.to(images.device), targets.to(images.device), order.to(images.device)
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            items = order[start : start + batch_size]
            yield Batch(images[rows[start : start + batch_size]], targets[on_device[start : start + batch_size]],
                        None if meta is None else meta[items])
        return
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=indices,
        num_workers=num_workers,
        drop_last=drop_last,
        generator=generator,
        worker_init_fn=_seed_worker,
        persistent_workers=False,
    )
    for item in loader:  # (images, targets) or, with metadata, (images, targets, meta)
        yield Batch(item[0], torch.as_tensor(item[1], dtype=torch.long), item[2] if len(item) > 2 else None)


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def drops_last_batch(epoch_size: int, batch_size: int, drop_last: bool) -> bool:
    """Whether an epoch of ``epoch_size`` draws loses its last partial batch.

    ``data.drop_last`` asks for it (the default: every step then has the same batch statistics);
    an epoch shorter than one batch keeps its only, partial batch either way (tiny runs).
    """
    return drop_last and epoch_size > batch_size
