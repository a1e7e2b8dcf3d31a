"""Decode-time pre-processing ops (MBIT seeds.md 2.7, HMLoss 3.5), per sample on uint8 C x H x W.

They run once per image in ``data.preprocess`` (before the cache), so their cost is paid once.
Each is registered in ``TRANSFORMS`` with ``batched = False``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch

from ..core.errors import ConfigError
from ..core.registry import TRANSFORMS
from .decode import resize_uint8


class SampleOp(ABC):
    """Base for per-sample ops: one uint8 C x H x W tensor in, one out."""

    batched = False
    random = False

    @abstractmethod
    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        ...

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


@TRANSFORMS.register("border_crop")
class BorderCrop(SampleOp):
    """Remove a border: `pixels` from each side, or keep the central (1 - `ratio`) of each side (MBIT)."""

    def __init__(self, pixels: int | None = None, ratio: float | None = None) -> None:
        if (pixels is None) == (ratio is None):
            raise ConfigError("border_crop: set exactly one of pixels or ratio")
        if ratio is not None and not 0.0 <= ratio < 1.0:
            raise ConfigError(f"border_crop.ratio must be in [0, 1), got {ratio}")
        if pixels is not None and pixels < 0:
            raise ConfigError(f"border_crop.pixels must be >= 0, got {pixels}")
        self.pixels, self.ratio = pixels, ratio

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        if self.pixels is not None:
            dy = dx = int(self.pixels)
        else:
            dy, dx = int(round(h * self.ratio / 2)), int(round(w * self.ratio / 2))
        if 2 * dy >= h or 2 * dx >= w:
            raise ConfigError(f"border_crop removes the whole {h}x{w} image; use a smaller pixels/ratio")
        return img[..., dy : h - dy, dx : w - dx]


@TRANSFORMS.register("resize_short_side")
class ResizeShortSide(SampleOp):
    """Resize so the shorter side is `size` pixels, keeping the aspect ratio (MBIT IMAGE_RESIZE_SHORT)."""

    def __init__(self, size: int) -> None:
        self.size = int(size)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        s = self.size / min(h, w)
        return resize_uint8(img, (max(1, round(h * s)), max(1, round(w * s))))


@TRANSFORMS.register("center_square_crop")
class CenterSquareCrop(SampleOp):
    """Crop the central square whose side is the shorter image side (HMLoss ISIC 2019)."""

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        return img[..., top : top + s, left : left + s]


def _apply_illuminant(img: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """Scale channel c by 1 / (e_c * sqrt(3)) with ``e`` unit-normalised, clip, back to uint8."""
    e = e / e.norm().clamp_min(1e-12)
    gain = 1.0 / (e.clamp_min(1e-12) * math.sqrt(3.0))
    out = img.to(torch.float32) * gain.view(-1, 1, 1)
    return out.clamp_(0, 255).to(torch.uint8)


def _gamma_lut(img: torch.Tensor, gamma: float) -> torch.Tensor:
    lut = (255.0 * (torch.arange(256, dtype=torch.float64) / 255.0) ** (1.0 / gamma)).round().clamp(0, 255).to(torch.uint8)
    return lut[img.long()]


@TRANSFORMS.register("shades_of_gray")
class ShadesOfGray(SampleOp):
    """Shades-of-Gray colour constancy, Minkowski norm `power` (6), optional `gamma` LUT first (MBIT).

    Finlayson & Trezzi (2004), the ISIC 2019 winners' (and MBIT's) ``shade_of_gray_cc``: the
    illuminant of channel c is ``e_c = mean(I_c ** power) ** (1 / power)`` and channel c is scaled by
    ``1 / (sqrt(3) * e_c / ||e||)`` (the sqrt(3) form, i.e. ``RMS(e) / e_c``, which is ``mean(e) / e_c``
    times RMS(e) / mean(e) >= 1), so that the illuminant becomes grey; the result is clipped to 0..255
    and truncated back to uint8 (decode-time ops receive and return uint8). ``power = 1`` is exactly
    ``gray_world``; a large power tends to max-RGB. A 1-channel (grey) image has no colour cast to
    remove and is returned unchanged, as by ``gray_world``.
    """

    def __init__(self, power: float = 6.0, gamma: float | None = None) -> None:
        if power <= 0:
            raise ConfigError(f"shades_of_gray.power must be > 0, got {power}")
        self.power = float(power)
        self.gamma = None if not gamma else float(gamma)  # MBIT: 0 means no gamma

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if img.shape[0] != 3:
            return img  # colour constancy is defined for RGB only
        if self.gamma is not None:
            img = _gamma_lut(img, self.gamma)
        x = img.to(torch.float64).flatten(1)
        e = x.pow(self.power).mean(1).pow(1.0 / self.power)
        return _apply_illuminant(img, e.to(torch.float32))


@TRANSFORMS.register("gray_world")
class GrayWorld(SampleOp):
    """Gray-world colour constancy; `grid` > 1 = segmented variant (HMLoss: illuminant averaged over a grid)."""

    def __init__(self, grid: int = 1) -> None:
        if grid < 1:
            raise ConfigError(f"gray_world.grid must be >= 1, got {grid}")
        self.grid = int(grid)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if img.shape[0] != 3:
            return img
        x = img.to(torch.float32)
        if self.grid == 1:
            return _apply_illuminant(img, x.mean((1, 2)))
        # Segmented: each cell's mean colour is unit-normalised before averaging, so one bright or
        # saturated region cannot dominate the illuminant estimate (our reading of the MATLAB
        # 'gray world seg' mode; with raw cell means it would equal plain gray world).
        h, w = img.shape[-2:]
        ys = torch.linspace(0, h, self.grid + 1).round().long().tolist()
        xs = torch.linspace(0, w, self.grid + 1).round().long().tolist()
        cells = []
        for i in range(self.grid):
            for j in range(self.grid):
                cell = x[:, ys[i] : ys[i + 1], xs[j] : xs[j + 1]]
                if cell.numel():
                    m = cell.mean((1, 2))
                    cells.append(m / m.norm().clamp_min(1e-12))
        return _apply_illuminant(img, torch.stack(cells).mean(0))
