"""MBIT's image-shrinking tools, run once before training (seeds.md 2.9).

* ISIC 2017 ``convert_from_ISIC_2017.py --small``: resize the short side to 450 (bilinear), JPEG
  quality 95, so loading is fast.
* ISIC 2019 ``resize_image_ISIC_2019.py``: many images have black borders (a dark vignette from the
  dermatoscope). Centre-square crop; strip dark border lines; trim dark 10-px corners; give back a
  5% margin; square again; resize to 450.

The numbers are MBIT's: a line is dark when its brightest value is below 40; the search starts
at the second line (the outermost line may be bright); trimming is skipped when a side would lose
more than 30% of the height. MBIT loops without end on an all-dark image; here the search stops
at the middle of the image.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from ..core.errors import DataError
from .converters import Converted
from .decode import open_image

DARK = 40
CORNER = 10
MARGIN = 0.05
MAX_TRIM = 0.3
SMALL_SIDE = 450


def resize_short_side(img: Image.Image, size: int = SMALL_SIDE) -> Image.Image:
    """Bilinear resize so the short side is ``size`` (the long side truncated, as torchvision's ``Resize(size)``)."""
    w, h = img.size
    if w <= h:
        new = (size, int(size * h / w))
    else:
        new = (int(size * w / h), size)
    return img if new == (w, h) else img.resize(new, Image.BILINEAR)


def center_square(img: np.ndarray) -> np.ndarray:
    """The central square of side min(h, w) (offsets rounded as torchvision's ``CenterCrop``)."""
    h, w = img.shape[:2]
    side = min(h, w)
    top, left = int(round((h - side) / 2.0)), int(round((w - side) / 2.0))
    return img[top : top + side, left : left + side]


def _dark_lines(lines: np.ndarray) -> int:
    """How many leading lines to cut: 0 unless lines 1, 2, ... (after the outermost) are dark."""
    n = 1
    limit = len(lines) // 2
    while n < limit and lines[n].max() < DARK:
        n += 1
    return n if n > 1 else 0


def strip_dark_lines(img: np.ndarray) -> np.ndarray:
    """Cut dark rows from the top and bottom, then dark columns from the left and right."""
    top = _dark_lines(img)
    if top:
        img = img[top:]
    bottom = _dark_lines(img[::-1])
    if bottom:
        img = img[:-bottom]
    left = _dark_lines(img.transpose(1, 0, 2))
    if left:
        img = img[:, left:]
    right = _dark_lines(img.transpose(1, 0, 2)[::-1])
    if right:
        img = img[:, :-right]
    return img


def trim_dark_corners(img: np.ndarray) -> np.ndarray:
    """Cut 10-px strips while a corner patch is dark; keep a 5% margin; undo it all when a side would lose > 30%."""
    h0, w0 = img.shape[:2]
    cut = np.zeros(4, dtype=np.int64)  # left, right, top, bottom
    work = img
    s = CORNER
    while min(work.shape[:2]) > 2 * s:
        h, w = work.shape[:2]
        c_l = c_r = c_t = c_b = 0
        if work[1:s, 1:s].max() < DARK:
            c_l, c_t = s, s
        if work[1:s, w - s : w - 1].max() < DARK:
            c_r, c_t = s, s
        if work[h - s : h - 1, 1:s].max() < DARK:
            c_l, c_b = s, s
        if work[h - s : h - 1, w - s : w - 1].max() < DARK:
            c_r, c_b = s, s
        if not (c_l or c_r):
            break
        work = work[c_t : h - c_b, c_l : w - c_r]
        cut += (c_l, c_r, c_t, c_b)
    margin = int(min(work.shape[:2]) * MARGIN)
    c_l, c_r, c_t, c_b = (int(max(0, c - margin)) for c in cut)
    if max(c_l, c_r, c_t, c_b) > h0 * MAX_TRIM:
        return img  # a dark image overall, not a dark border
    return img[c_t : h0 - c_b, c_l : w0 - c_r]


def isic2019_small(img: Image.Image, size: int = SMALL_SIDE) -> Image.Image:
    """MBIT's ISIC 2019 treatment: square, strip dark borders and corners, square again, resize to ``size``."""
    arr = np.asarray(img.convert("RGB"))
    arr = trim_dark_corners(strip_dark_lines(center_square(arr)))
    out = Image.fromarray(np.ascontiguousarray(center_square(arr)))
    return resize_short_side(out, size)


def shrink_images(conv: Converted, root: str | Path, out_dir: str | Path, size: int = SMALL_SIDE,
                  remove_borders: bool = False) -> Converted:
    """Write a small JPEG (quality 95) of every image under ``out_dir``; returns the records with their new paths.

    ``remove_borders`` applies :func:`isic2019_small`, otherwise :func:`resize_short_side`.
    """
    root, out_dir = Path(root), Path(out_dir)
    if size < 1:
        raise DataError(f"--short-side must be a positive number of pixels, got {size}")
    if any("clinic_path" in r.extra for r in conv.records):
        raise DataError("--small resizes the dermoscopic images only; Derm7pt also lists clinical images, convert it without --small")
    records = []
    for r in conv.records:
        src = root / r.derm_path
        if not src.exists():
            raise DataError(f"image '{src}' not found; pass --root (the image folder) of the original images")
        try:
            with open_image(src, None) as img:
                small = isic2019_small(img, size) if remove_borders else resize_short_side(img.convert("RGB"), size)
        except DataError as e:
            raise DataError(f"{e} (or leave it out of the ground truth)") from None
        rel = str(Path(r.derm_path).with_suffix(".jpg"))
        dst = out_dir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        small.save(dst, quality=95)
        records.append(replace(r, derm_path=rel))
    return Converted(records, conv.class_names, conv.num_classes)
