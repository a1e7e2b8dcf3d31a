"""Decoding an image file into the uint8 C x H x W tensor every dataset stores.

One :class:`Decoder` does it for training (cache build or lazy access) and for ``predict`` on new
images, so a deployed model sees exactly the pixels it was trained on: PIL open -> mode
conversion -> ``data.preprocess`` ops (per-sample transforms) -> resize to ``data.image_size``.

Every image file longtail reads goes through :func:`open_image`: only a regular file is opened (a
FIFO or a device would block or never end), only the raster plugins of ``RASTER_FORMATS`` may parse
it (a ``photo.png`` that is really EPS would otherwise run Ghostscript), and its header size is
checked against ``data.max_image_pixels`` before a pixel is decoded (a decompression bomb).
"""

from __future__ import annotations

import json
import os
import stat
import struct
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError
from torchvision.transforms.v2 import functional as TF

from ..core.errors import ConfigError, DataError

if TYPE_CHECKING:
    from ..core.schema import Component, DataConfig

GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
# the Pillow plugins allowed to parse an image file: plain raster formats whose plugins never call an
# external program (EPS runs Ghostscript, for one); they cover IMAGE_EXTENSIONS (PPM reads .pgm too)
RASTER_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF", "PPM")
DEFAULT_MAX_PIXELS = 89_478_485  # data.max_image_pixels's default (Pillow's own limit)
DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)


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
        max_image_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        if channels not in (1, 3):
            raise ConfigError(f"data.channels must be 1 or 3, got {channels}")
        self.channels = channels
        self.image_size = as_hw(image_size)
        self.preprocess_spec = [{"name": c.name, **c.kwargs} for c in preprocess]
        self.ops = build_ops(preprocess, "data.preprocess")
        self.max_image_pixels = max_image_pixels
        self._first_size: tuple[int, int] | None = None

    @classmethod
    def from_config(cls, cfg: "DataConfig", channels: int) -> "Decoder":
        return cls(channels=channels, image_size=cfg.image_size, preprocess=cfg.preprocess, max_image_pixels=cfg.max_image_pixels)

    @property
    def key(self) -> str:
        return json.dumps(
            {"channels": self.channels, "image_size": self.image_size, "preprocess": self.preprocess_spec,
             "max_image_pixels": self.max_image_pixels},
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
        img = self.apply(read_image(path, self.channels, self.max_image_pixels))
        if self.image_size is None:
            size = (int(img.shape[1]), int(img.shape[2]))
            if self._first_size is None:
                self._first_size = size
            elif size != self._first_size:
                raise DataError(
                    f"image '{shown(path)}' is {size[0]}x{size[1]} but earlier images are "
                    f"{self._first_size[0]}x{self._first_size[1]}; set data.image_size so every image is resized"
                )
        return img


def shown(path: str | os.PathLike[str]) -> str:
    """``path`` as text that prints and encodes as UTF-8: bytes of a file name that are not UTF-8
    (Linux allows them; Python keeps them as lone surrogates) are written ``\\xff``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, from its ``st_mode``, for a message: 'a FIFO', 'a folder', ..."""
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def irregular(path: str | os.PathLike[str]) -> str | None:
    """What ``path`` is when it exists but is not a regular file (symlinks followed), else None.

    ``Path.is_file()`` alone says False for a FIFO too, which would make it "not found"."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return None if stat.S_ISREG(mode) else file_kind(mode)


def open_regular(path: str | os.PathLike[str], what: str = "image file", fix: str = "set data.on_bad_image=skip") -> IO[bytes]:
    """``path`` opened for reading when it is a regular file; a one-line DataError otherwise.

    A FIFO or a device is never opened. The file is opened non-blocking and checked again on its
    descriptor, so a FIFO swapped in after the first check cannot hang the read either."""
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISREG(mode):
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
            mode = os.fstat(fd).st_mode
            if stat.S_ISREG(mode):
                return os.fdopen(fd, "rb")
            os.close(fd)
    except FileNotFoundError:
        raise DataError(f"{what} '{shown(path)}' not found; check data.source.root and the paths it holds or {fix}") from None
    except OSError as e:
        raise DataError(f"{what} '{shown(path)}' cannot be read ({e.strerror or type(e).__name__}); check its permissions or {fix}") from None
    raise DataError(f"{what} '{shown(path)}' is {file_kind(mode)}, not a regular file; replace it with the file itself or {fix}")


def _accepts(fmt: str, prefix: bytes) -> bool:
    """Whether Pillow's plugin ``fmt`` recognises a file's first bytes (its byte check only, no parsing);
    a plugin without a check accepts anything, one lacking its library answers with a str."""
    accept = Image.OPEN[fmt][1]
    try:
        verdict = accept(prefix) if accept is not None else True
    except (IndexError, TypeError, ValueError, struct.error):
        return False
    return bool(verdict) and not isinstance(verdict, str)


def _parse_header(fp: IO[bytes], path: str | os.PathLike[str]) -> ImageFile.ImageFile:
    """The header of ``fp`` parsed by the first plugin of ``RASTER_FORMATS`` that accepts it.

    This is the plugin loop of ``Image.open(fp, formats=RASTER_FORMATS)`` without the process-wide
    guard Image.open adds (``Image.MAX_IMAGE_PIXELS``: a warning, an error at twice it), so that
    ``data.max_image_pixels`` is the one limit and its message can give the size."""
    Image.init()
    prefix = fp.read(16)
    failure: Exception | None = None
    for fmt in RASTER_FORMATS:
        if _accepts(fmt, prefix):
            fp.seek(0)
            try:
                return Image.OPEN[fmt][0](fp, os.fspath(path))
            except (SyntaxError, IndexError, TypeError, struct.error) as e:
                failure = e
    if failure is not None:  # a raster file, damaged
        raise SyntaxError(str(failure))
    foreign = "PDF" if prefix.startswith(b"%PDF") else next((f for f in Image.ID if f not in RASTER_FORMATS and Image.OPEN[f][1] and _accepts(f, prefix)), None)
    if foreign is not None:
        raise DataError(f"image file '{shown(path)}' is {foreign}, not one of the raster formats longtail reads ({', '.join(RASTER_FORMATS)}); "
                        "convert it or set data.on_bad_image=skip")
    raise UnidentifiedImageError("cannot identify image file")


@contextmanager
def open_image(path: str | os.PathLike[str], max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Iterator[ImageFile.ImageFile]:
    """An image file's header (no pixel decoded yet) after the checks every read makes: a regular
    file, a format of ``RASTER_FORMATS``, at most ``max_pixels`` pixels (None: no limit).

    Any problem, including one of the caller's decoding inside the ``with`` block (``img.load()``),
    is a one-line DataError naming the file."""
    try:
        with open_regular(path) as fp, _parse_header(fp, path) as img:
            width, height = img.size
            if max_pixels is not None and width * height > max_pixels:
                raise DataError(f"image file '{shown(path)}' is {width}x{height} ({width * height:,} pixels), above data.max_image_pixels "
                                f"({max_pixels:,}); resize it, raise the limit, or set data.on_bad_image=skip")
            yield img
    except DataError:
        raise
    except DECODE_ERRORS as e:
        raise DataError(
            f"image file '{shown(path)}' cannot be decoded ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'corrupt'}); "
            "replace the file or set data.on_bad_image=skip"
        ) from None


def read_image(path: str | Path, channels: int, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """Open and fully decode one image file, raising a one-line DataError naming a bad file."""
    with open_image(path, max_pixels) as img:
        img.load()
        return pil_to_tensor(img, channels)


def header_ok(path: str | os.PathLike[str], max_pixels: int | None = DEFAULT_MAX_PIXELS) -> bool:
    """Whether ``path`` passes :func:`open_image` (the cheap ``on_bad_image=skip`` pre-check)."""
    try:
        with open_image(path, max_pixels):
            return True
    except DataError:
        return False


def probe_channels(path: str | Path) -> int:
    """1 for grey-scale files, 3 otherwise (only the header is read)."""
    try:
        with open_image(path, None) as img:
            return 1 if img.mode in GRAY_MODES else 3
    except DataError:
        return 3


def decode_image_file(path: str | Path, cfg: "DataConfig", channels: int) -> torch.Tensor:
    """Decode one file exactly as the file datasets of ``cfg`` do (used by ``predict``)."""
    return Decoder.from_config(cfg, channels)(path)


def readable(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> bool:
    """Whether ``path`` decodes (used to pre-filter files with ``on_bad_image=skip``)."""
    try:
        read_image(path, 3, max_pixels)
        return True
    except DataError:
        return False
