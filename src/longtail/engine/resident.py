"""``data.device_resident``: the training split's uint8 images copied once to the training device.

On a GPU, the default path slices every batch from host memory and copies it over; for a small
model on small images (ResNet-32 on CIFAR) those copies, not the model, bound the step. A resident
split is sliced where it lives (:func:`longtail.engine.batches.batches` indexes on the images'
device) and the train pipeline's batched ops (crops, flips, colour jitter, normalisation) already
run on whole batches on the device the batch is on, so the loop, the ops and their random draws
are the ones of the default path: the same per-image parameters drawn from the same (CPU) RNG
stream, giving the same batches bit for bit (checked on CPU in tests/engine/test_resident.py).

Only what can run that way is accepted, each refusal a one-line error: an in-memory split
(``data.cache`` true or mmap), no DataLoader workers, and no per-sample transform (those run per
image in the Dataset, on the CPU).
"""

from __future__ import annotations

from typing import Any

import torch

from ..core.errors import ConfigError
from ..data.dataset import TensorImageDataset


def resident_split(dataset: Any, pipeline: Any, device: torch.device, num_workers: int, transforms: list[Any] | None = None) -> TensorImageDataset:
    """``dataset`` (a split) with its images on ``device``, after the checks above; ``pipeline`` is its train pipeline."""
    if num_workers:
        raise ConfigError(f"data.device_resident slices batches on the device, which DataLoader workers cannot; set data.num_workers=0 "
                          f"(it is {num_workers}) or data.device_resident=false")
    if pipeline.sample is not None:
        names = [entry.name for entry in transforms or [] if not getattr(_op(entry), "batched", True)]
        which = f" ({', '.join(names)})" if names else ""
        raise ConfigError(f"data.device_resident needs every train transform to run batched on the device, but per-sample transforms{which} "
                          "run per image on the CPU; remove them from data.train_transforms or set data.device_resident=false")
    if not isinstance(dataset, TensorImageDataset):
        raise ConfigError(f"data.device_resident needs the training images in memory as one uint8 tensor, but this split is "
                          f"'{getattr(dataset, 'storage', type(dataset).__name__)}'; set data.cache=true or data.device_resident=false")
    host = dataset.tensor()
    try:
        images = host.to(device)
    except torch.OutOfMemoryError:
        size = host.element_size() * host.nelement() / 2**30
        raise ConfigError(f"data.device_resident: the training split's {size:.1f} GiB of images do not fit on {device}; "
                          "lower data.image_size or set data.device_resident=false") from None
    out = TensorImageDataset(images, dataset.targets, dataset.class_names, ids=dataset.ids, groups=dataset.groups, storage=dataset.storage)
    if getattr(dataset, "meta", None) is not None:  # model.metadata: the rows stay on the CPU, sliced beside the images
        out.meta = dataset.meta
    return out


def _op(entry: Any) -> Any:
    """The transform class an entry names (for its ``batched`` flag), None when it is not registered."""
    from ..core.registry import TRANSFORMS

    try:
        return TRANSFORMS.get(entry.name)
    except Exception:
        return None
