"""Decoding an image file into the uint8 C x H x W tensor every dataset stores.

One :class:`Decoder` does it for training (cache build or lazy access) and for ``predict`` on new
images, so a deployed model sees exactly the pixels it was trained on: PIL open -> mode
conversion -> ``data.preprocess`` ops (per-sample transforms) -> resize to ``data.image_size``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.v2 import functional as TF

from ..core.errors import ConfigError, DataError

if TYPE_CHECKING:
    from ..core.schema import Component, DataConfig

GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def as_hw(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """``data.image_size`` as (height, width): an int means a square."""
    if size is None:
        return None
    if isinstance(size, str):  # 'model' is resolved from the backbone before the data is built
        raise ConfigError(f"data.image_size: '{size}' is resolved from the model by longtail.train; pass a number (or [height, width]) here")
    if isinstance(size, int):
        return (size, size)
    h, w = (int(s) for s in size)
    return (h, w)


def pil_to_tensor(img: Image.Image, channels: int) -> torch.Tensor:
    """A PIL image converted to 'L' or 'RGB' as a uint8 C x H x W tensor.

    High bit depth grey images are scaled to 8 bits before any conversion (PIL's own conversion
    clips them): 16-bit modes by 255/65535, 32-bit integer mode 'I' the same when its values fit
    16 bits (a 16-bit PNG often opens as 'I') and by its maximum otherwise, float mode 'F' by 255
    when its values lie in [0, 1] and clipped to [0, 255] otherwise.
    """
    mode = "L" if channels == 1 else "RGB"
    if img.mode in WIDE_MODES:
        img = Image.fromarray(to_uint8(img), mode="L")
    if img.mode != mode:
        img = img.convert(mode)
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


WIDE_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}


def to_uint8(img: Image.Image) -> np.ndarray:
    """A 16-bit, 32-bit integer or float single-channel image as uint8 H x W (see :func:`pil_to_tensor`)."""
    arr = np.asarray(img, dtype=np.float64)
    if img.mode == "F":
        finite = arr[np.isfinite(arr)]
        scale = 255.0 if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0 else 1.0
        arr = np.nan_to_num(arr, nan=0.0, posinf=255.0 / scale, neginf=0.0) * scale
    elif img.mode == "I" and arr.size and (arr.max() > 65535 or arr.min() < 0):
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / max(hi - lo, 1.0) * 255.0
    else:
        arr = arr * (255.0 / 65535.0)
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def resize_uint8(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize of a uint8 (N x) C x H x W tensor; a no-op at the right size."""
    if tuple(img.shape[-2:]) == tuple(size):
        return img
    return TF.resize(img, list(size), antialias=True)


def build_ops(entries: Sequence["Component"], where: str) -> list[Callable[[torch.Tensor], torch.Tensor]]:
    """Registered transforms from config entries (``data.preprocess``)."""
    from ..core.registry import TRANSFORMS

    ops = []
    for i, entry in enumerate(entries):
        try:
            ops.append(TRANSFORMS.create(entry.name, **entry.kwargs))
        except ConfigError as e:
            raise ConfigError(f"{where}.{i}: {e}") from None
    return ops


class Decoder:
    """Callable ``path -> uint8 C x H x W``; ``key`` identifies its settings for the tensor cache."""

    def __init__(
        self,
        channels: int,
        image_size: int | Sequence[int] | None = None,
        preprocess: Sequence["Component"] = (),
    ) -> None:
        if channels not in (1, 3):
            raise ConfigError(f"data.channels must be 1 or 3, got {channels}")
        self.channels = channels
        self.image_size = as_hw(image_size)
        self.preprocess_spec = [{"name": c.name, **c.kwargs} for c in preprocess]
        self.ops = build_ops(preprocess, "data.preprocess")
        self._first_size: tuple[int, int] | None = None

    @classmethod
    def from_config(cls, cfg: "DataConfig", channels: int) -> "Decoder":
        return cls(channels=channels, image_size=cfg.image_size, preprocess=cfg.preprocess)

    @property
    def key(self) -> str:
        return json.dumps(
            {"channels": self.channels, "image_size": self.image_size, "preprocess": self.preprocess_spec},
            sort_keys=True,
            default=str,
        )

    def apply(self, img: torch.Tensor) -> torch.Tensor:
        """Pre-processing + resize on an already decoded uint8 C x H x W tensor (array sources)."""
        for op in self.ops:
            img = op(img)
        if self.image_size is not None:
            img = resize_uint8(img, self.image_size)
        return img.contiguous()

    def __call__(self, path: str | Path) -> torch.Tensor:
        img = self.apply(read_image(path, self.channels))
        if self.image_size is None:
            size = (int(img.shape[1]), int(img.shape[2]))
            if self._first_size is None:
                self._first_size = size
            elif size != self._first_size:
                raise DataError(
                    f"image '{path}' is {size[0]}x{size[1]} but earlier images are "
                    f"{self._first_size[0]}x{self._first_size[1]}; set data.image_size so every image is resized"
                )
        return img


def read_image(path: str | Path, channels: int) -> torch.Tensor:
    """Open and fully decode one image file, raising a one-line DataError naming a bad file."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"image file '{p}' not found; check data.source.root and the paths it holds or set data.on_bad_image=skip")
    try:
        with Image.open(p) as img:
            img.load()
            return pil_to_tensor(img, channels)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(
            f"image file '{p}' cannot be decoded ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'corrupt'}); "
            "replace the file or set data.on_bad_image=skip"
        ) from None


def probe_channels(path: str | Path) -> int:
    """1 for grey-scale files, 3 otherwise (only the header is read)."""
    try:
        with Image.open(path) as img:
            return 1 if img.mode in GRAY_MODES else 3
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return 3


def decode_image_file(path: str | Path, cfg: "DataConfig", channels: int) -> torch.Tensor:
    """Decode one file exactly as the file datasets of ``cfg`` do (used by ``predict``)."""
    return Decoder.from_config(cfg, channels)(path)


def readable(path: str | Path) -> bool:
    """Whether ``path`` decodes (used to pre-filter files with ``on_bad_image=skip``)."""
    try:
        read_image(path, 3)
        return True
    except DataError:
        return False

