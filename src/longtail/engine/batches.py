"""Batches from a dataset in a given index order, with seeded DataLoader workers."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch


# ------------------------------------------------------------------------------------ batches
def iterate_batches(dataset: Any, indices: Any, batch_size: int, num_workers: int, seed: int, drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (uint8 images, targets) batches in the order given by ``indices`` (a sampler or list).

    In-memory datasets without a per-sample transform are sliced directly (one tensor index per
    batch, no per-item Python overhead); everything else goes through a seeded DataLoader.
    """
    images = getattr(dataset, "images", None)
    if isinstance(images, torch.Tensor) and getattr(dataset, "sample_transform", None) is None and num_workers == 0:
        order = torch.as_tensor(list(iter(indices)), dtype=torch.long)
        targets = torch.as_tensor(np.asarray(dataset.targets), dtype=torch.long)
        # subsets are index views into a shared tensor: item i is images[index[i]]
        view = getattr(dataset, "index", None)
        rows = order if view is None else torch.as_tensor(np.asarray(view), dtype=torch.long)[order]
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            yield images[rows[start : start + batch_size]], targets[order[start : start + batch_size]]
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
    for x, y in loader:
        yield x, torch.as_tensor(y, dtype=torch.long)


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
