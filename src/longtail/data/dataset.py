"""The two ``ImageDataset`` implementations every split is made of.

``TensorImageDataset`` holds one uint8 tensor (N x C x H x W) and an index array: subsets are
views (no pixel copy), which is what makes carving splits and long-tail subsets of a cached
dataset free; the tensor may be memory-mapped (``data.cache: mmap``). ``FileImageDataset`` decodes
on access with a :class:`~longtail.data.decode.Decoder` (``data.cache: false``: streamed, one image
per access in DataLoader workers, for datasets too large to keep in memory).

``storage`` says which of the three a split uses ("memory", "mmap", "stream"); runs record it.

``meta`` (``model.metadata``): the encoded metadata of every item, float32 N x M, set after the
splits are built (:func:`longtail.data.metadata.attach_metadata`). With it, an item is
``(image, target, meta_row)``; without it (None, every image-only run) an item stays ``(image, target)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..core.errors import DataError


class ImageDataset(Dataset, ABC):
    """A split: uint8 C x H x W images with int targets (-1 = unlabelled), ids, optional groups."""

    targets: np.ndarray
    ids: list[str]
    groups: np.ndarray | None
    class_names: list[str]
    sample_transform: Callable[[torch.Tensor], torch.Tensor] | None
    storage: str = "memory"
    meta: torch.Tensor | None = None  # encoded metadata, float32 N x M (model.metadata); None: image only

    def __len__(self) -> int:
        return len(self.targets)

    @abstractmethod
    def load(self, i: int) -> torch.Tensor:
        """The stored (decoded, pre-processed) uint8 image ``i`` without ``sample_transform``."""

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        img = self.load(int(i))
        if self.sample_transform is not None:
            img = self.sample_transform(img)
        if self.meta is not None:
            return img, int(self.targets[i]), self.meta[int(i)]
        return img, int(self.targets[i])

    def set_meta(self, values: torch.Tensor | None) -> None:
        """Attach the encoded metadata (one float32 row per item, in item order), or detach it with None."""
        if values is not None and (values.ndim != 2 or len(values) != len(self)):
            raise ValueError(f"metadata must be N x M with N = {len(self)} items, got {tuple(values.shape)}")
        self.meta = None if values is None else values.to(torch.float32)

    def _carry_meta(self, out: "ImageDataset", idx: np.ndarray) -> "ImageDataset":
        """``out`` (a subset at ``idx``) with the matching rows of this split's metadata."""
        if self.meta is not None:
            out.meta = self.meta[torch.from_numpy(np.asarray(idx, dtype=np.int64))]
        return out

    @abstractmethod
    def subset(self, indices: Sequence[int] | np.ndarray) -> "ImageDataset":
        ...

    @property
    def channels(self) -> int:
        return int(self.load(0).shape[0]) if len(self) else 0

    @property
    def image_size(self) -> tuple[int, int]:
        img = self.load(0)
        return int(img.shape[1]), int(img.shape[2])

    def class_counts(self, num_classes: int | None = None) -> np.ndarray:
        """Per-class counts of the labelled items (unlabelled -1 are ignored)."""
        n = len(self.class_names) if num_classes is None else num_classes
        labelled = self.targets[self.targets >= 0]
        return np.bincount(labelled, minlength=n).astype(np.int64)

    def _select(self, indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            raise DataError(f"subset index out of range 0..{len(self) - 1}; the split indices do not match this dataset")
        meta = {
            "targets": self.targets[idx],
            "ids": [self.ids[i] for i in idx],
            "groups": None if self.groups is None else self.groups[idx],
            "class_names": list(self.class_names),
        }
        return idx, meta

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, classes={len(self.class_names)})"


class TensorImageDataset(ImageDataset):
    """In-memory fast path: a shared uint8 N x C x H x W tensor plus the indices of this split."""

    def __init__(
        self,
        images: torch.Tensor,
        targets: Sequence[int] | np.ndarray,
        class_names: Sequence[str],
        ids: Sequence[str] | None = None,
        groups: Sequence[Any] | np.ndarray | None = None,
        index: np.ndarray | None = None,
        storage: str = "memory",
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be a uint8 N x C x H x W tensor, got {images.dtype} {tuple(images.shape)}")
        self.images = images
        self.index = np.arange(len(images), dtype=np.int64) if index is None else np.asarray(index, dtype=np.int64)
        self.targets = np.asarray(targets, dtype=np.int64).reshape(-1)
        if len(self.targets) != len(self.index):
            raise ValueError(f"{len(self.targets)} targets for {len(self.index)} images")
        self.ids = [str(i) for i in ids] if ids is not None else [str(i) for i in range(len(self.index))]
        self.groups = None if groups is None else np.asarray(groups)
        self.class_names = [str(c) for c in class_names]
        self.sample_transform = None
        self.storage = storage  # "memory", or "mmap" when images is a memory-mapped cache file

    def load(self, i: int) -> torch.Tensor:
        return self.images[self.index[i]]

    def __getitems__(self, indices: list[int]) -> list[tuple[Any, ...]]:
        """Batched fetch used by DataLoader: one gather instead of one index per image."""
        batch = self.images[torch.from_numpy(self.index[np.asarray(indices, dtype=np.int64)])]
        targets = self.targets[indices].tolist()
        images = batch.unbind(0) if self.sample_transform is None else [self.sample_transform(img) for img in batch.unbind(0)]
        if self.meta is not None:
            return list(zip(images, targets, self.meta[torch.as_tensor(indices, dtype=torch.long)].unbind(0)))
        return list(zip(images, targets))

    def subset(self, indices: Sequence[int] | np.ndarray) -> "TensorImageDataset":
        idx, meta = self._select(indices)
        out = TensorImageDataset(self.images, index=self.index[idx], storage=self.storage, **meta)
        out.sample_transform = self.sample_transform
        return self._carry_meta(out, idx)  # type: ignore[return-value]

    def tensor(self) -> torch.Tensor:
        """All images of this split as one uint8 tensor (a copy unless the split is the whole store)."""
        if len(self.index) == len(self.images) and np.array_equal(self.index, np.arange(len(self.images))):
            return self.images
        return self.images[torch.from_numpy(self.index)]

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])


class FileImageDataset(ImageDataset):
    """Lazy path: decodes ``paths[i]`` with ``decoder`` on every access (all the same size)."""

    storage = "stream"

    def __init__(
        self,
        paths: Sequence[str],
        targets: Sequence[int] | np.ndarray,
        class_names: Sequence[str],
        decoder: Callable[[str], torch.Tensor],
        ids: Sequence[str] | None = None,
        groups: Sequence[Any] | np.ndarray | None = None,
    ) -> None:
        self.paths = [str(p) for p in paths]
        self.targets = np.asarray(targets, dtype=np.int64).reshape(-1)
        if len(self.targets) != len(self.paths):
            raise ValueError(f"{len(self.targets)} targets for {len(self.paths)} files")
        self.ids = [str(i) for i in ids] if ids is not None else list(self.paths)
        self.groups = None if groups is None else np.asarray(groups)
        self.class_names = [str(c) for c in class_names]
        self.decoder = decoder
        self.sample_transform = None
        self.skipped: list[str] = []

    def load(self, i: int) -> torch.Tensor:
        return self.decoder(self.paths[i])

    def subset(self, indices: Sequence[int] | np.ndarray) -> "FileImageDataset":
        idx, meta = self._select(indices)
        out = FileImageDataset([self.paths[i] for i in idx], decoder=self.decoder, **meta)
        out.sample_transform = self.sample_transform
        return self._carry_meta(out, idx)  # type: ignore[return-value]

    def with_decoder(self, decoder: Callable[[str], torch.Tensor]) -> "FileImageDataset":
        """The same files decoded another way (image size, channels, pre-processing)."""
        out = FileImageDataset(self.paths, self.targets, self.class_names, decoder, self.ids, self.groups)
        out.skipped = list(self.skipped)
        out.meta = self.meta
        return out

    @property
    def channels(self) -> int:
        return int(getattr(self.decoder, "channels", None) or super().channels)

    @property
    def image_size(self) -> tuple[int, int]:
        size = getattr(self.decoder, "image_size", None)
        return tuple(size) if size else super().image_size  # type: ignore[return-value]
