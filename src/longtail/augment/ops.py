"""The 25 image ops of MBIT's Modified RandAugment, on uint8 tensors C x H x W (PIL- and OpenCV-free).

Every op is ``op(img, magnitude, generator=None) -> img`` with the same shape and dtype. ``magnitude``
is RandAugment's M (MBIT uses 1-20, 10 by default). An op with range [lo, hi] at M = 10 draws its
strength ``U(lo, lo + (hi - lo) / 10 * M)`` ("random magnitude with increasing upper bound": M > 10
goes beyond the range), and a random sign where the op is two-sided. Randomness comes from
``generator`` (None = torch's global RNG, which the engine seeds and DataLoader workers re-seed).
Geometric ops fill uncovered pixels with the ImageNet mean x 255.

Deviations from the seed code, all because our ops must keep the image size (the engine crops
afterwards, batched) or because the original is a bug:

- ``scale`` / ``scale_xy_diff`` zoom about the centre inside the same canvas (MBIT resizes the whole
  image, then random-crops 224); ``crop`` and ``resize`` (MBIT pipeline steps that change the size,
  in no policy) are size-keeping stand-ins: zoom into a random sub-window, and down/up-sampling.
- ``cutout``'s half-side range (0-50 px) is for a 224 px crop; it is scaled by min(H, W) / 224 so
  small images (CIFAR) are not erased entirely.
- ``lens_distortion`` uses the original camera matrix as the new one (OpenCV's
  ``getOptimalNewCameraMatrix`` re-scaling is dropped) and bilinear ``grid_sample`` instead of remap.
- ``mixup`` needs another training image: it takes ``other=`` (the augmenter passes one from its
  ``image_pool``, which a training run fills with the training split); without a pool the
  augmenter leaves this op out of its policy.
- pixel values are rounded, not truncated, when converted back to uint8.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as nnf
import torchvision.transforms.v2.functional as TF

GRADES = 10
IMAGENET_MEAN = (0.485, 0.456, 0.406)

Op = Callable[..., torch.Tensor]

__all__ = ["OPS", "COLOR_OPS", "SHAPE_OPS", "EXTRA_OPS", "RAND_OPS", "fill_value", "GRADES"]


# ------------------------------------------------------------------------------ random helpers
def _rand(g: torch.Generator | None) -> float:
    return float(torch.rand((), generator=g))


def _strength(lo: float, hi: float, magnitude: float, g: torch.Generator | None) -> float:
    """U(lo, lo + (hi - lo) / GRADES * magnitude)."""
    return lo + (hi - lo) / GRADES * magnitude * _rand(g)


def _sign(g: torch.Generator | None) -> float:
    return 1.0 if _rand(g) < 0.5 else -1.0


def _randint(lo: int, hi: int, g: torch.Generator | None) -> int:
    """Uniform integer in [lo, hi] (both inclusive)."""
    return int(torch.randint(lo, hi + 1, (), generator=g))


# ------------------------------------------------------------------------------ pixel helpers
def fill_value(channels: int) -> list[float]:
    """ImageNet mean x 255 per channel (grey-level mean for a single channel)."""
    if channels == 3:
        return [m * 255.0 for m in IMAGENET_MEAN]
    return [sum(IMAGENET_MEAN) / 3 * 255.0] * channels


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.round().clamp_(0, 255).to(torch.uint8)


def _remap(img: torch.Tensor, src_x: torch.Tensor, src_y: torch.Tensor) -> torch.Tensor:
    """Bilinear resampling: output pixel (i, j) reads the input at pixel coordinates (src_y, src_x).

    Coordinates are in pixel units with pixel centres at integers; outside the image the ImageNet
    mean fill is blended in (sampling a ones-mask with zero padding gives the exact blend weight).
    """
    c, h, w = img.shape
    grid = torch.stack([(2 * src_x + 1) / w - 1, (2 * src_y + 1) / h - 1], dim=-1).unsqueeze(0).float().to(img.device)
    stacked = torch.cat([img.float(), torch.ones(1, h, w, device=img.device)], dim=0).unsqueeze(0)
    out = nnf.grid_sample(stacked, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    values, mask = out[:c], out[c:]
    fill = torch.tensor(fill_value(c), device=img.device).view(c, 1, 1)
    return _to_uint8(values + (1 - mask) * fill)


def _centred_grid(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates relative to the image centre, shapes H x W."""
    ys = torch.arange(h, dtype=torch.float32) - (h - 1) / 2
    xs = torch.arange(w, dtype=torch.float32) - (w - 1) / 2
    return torch.meshgrid(xs, ys, indexing="xy")


def _warp_linear(img: torch.Tensor, inverse: tuple[float, float, float, float]) -> torch.Tensor:
    """Warp about the centre; ``inverse`` = (a, b, c, d) maps output (x, y) to source (a x + b y, c x + d y)."""
    _, h, w = img.shape
    x, y = _centred_grid(h, w)
    a, b, c, d = inverse
    return _remap(img, a * x + b * y + (w - 1) / 2, c * x + d * y + (h - 1) / 2)


def _blend(degenerate: torch.Tensor, img: torch.Tensor, factor: float) -> torch.Tensor:
    """degenerate + factor * (img - degenerate), clipped (factor 1 = identity)."""
    return _to_uint8(degenerate.float() + factor * (img.float() - degenerate.float()))


# ------------------------------------------------------------------------------ colour ops
def mixup(img: torch.Tensor, magnitude: float, generator: torch.Generator | None = None, other: torch.Tensor | None = None) -> torch.Tensor:
    """Blend with another training image (resized to this size), weight U(0, 0.2) at M=10."""
    if other is None:
        raise ValueError("mixup op needs another image: pass other=<uint8 C x H x W tensor>")
    if other.shape[0] != img.shape[0]:
        raise ValueError(f"mixup op: the other image has {other.shape[0]} channels, this one {img.shape[0]}")
    if other.shape[1:] != img.shape[1:]:
        other = TF.resize(other, list(img.shape[1:]), antialias=True)
    return _blend(img, other, _strength(0.0, 0.2, magnitude, generator))


def gaussian_noise(img: torch.Tensor, magnitude: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add N(0, 50) noise scaled by U(0, 0.2) at M=10."""
    factor = _strength(0.0, 0.2, magnitude, generator)
    noise = (torch.randn(img.shape, generator=generator) * 50.0 * factor).to(img.device)
    return _to_uint8(img.float() + noise)


def saturation(img: torch.Tensor, magnitude: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Blend with the grey image by 1 +- U(0, 0.4) at M=10 (no-op on one channel)."""
    return TF.adjust_saturation(img, 1.0 + _sign(generator) * _strength(0.0, 0.4, magnitude, generator))


def contrast(img: torch.Tensor, magnitude: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Blend with the mean grey level by 1 +- U(0, 0.4) at M=10."""
    return TF.adjust_contrast(img, 1.0 + _sign(generator) * _strength(0.0, 0.4, magnitude, generator))


def brightness(img: torch.Tensor, magnitude: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Blend with black by 1 +- U(0, 0.4) at M=10."""
    return TF.adjust_brightness(img, 1.0 + _sign(generator) * _strength(0.0, 0.4, magnitude, generator))


def sharpness(img: torch.Tensor, magnitude: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Blend with the 3x3-smoothed image by 1 +- U(0, 0.4) at M=10."""
    return TF.adjust_sharpness(img, 1.0 + _sign(generator) * _strength(0.0, 0.4, magnitude, generator))


def color_casting(img: torch.Tensor, magnitude: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift one random channel (and each other channel with probability 1/3) by +- U(0, 30) at M=10."""
    out = img.float()
    first = _randint(0, img.shape[0] - 1, generator)
    for ch in range(img.shape[0]):
        extra = _randint(-1, 1, generator) == 1
        if ch == first or extra:
            out[ch] += _sign(generator) * _strength(0.0, 30.0, magnitude, generator)
    return _to_uint8(out)


def equalize_yuv(img: torch.Tensor, magnitude: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Histogram-equalize the luma (Y of YCbCr) only, keeping the chroma."""
    if img.shape[0] != 3:
        return TF.equalize(img)
    r, g, b = img.float()
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb, cr = (b - y) * 0.564, (r - y) * 0.713
    y = TF.equalize(_to_uint8(y).unsqueeze(0))[0].float()
    return _to_uint8(torch.stack([y + 1.403 * cr, y - 0.714 * cr - 0.344 * cb, y + 1.773 * cb]))


def posterize(img: torch.Tensor, magnitude: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero the round(U(0, 3)) lowest bits (M=10)."""
    drop = min(round(_strength(0.0, 3.0, magnitude, generator)), 7)
    return TF.posterize(img, 8 - drop)


def autocontrast(img: torch.Tensor, magnitude: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Stretch to [0, 255] with ONE min/max over all channels (as MBIT; PIL's is per channel)."""
    lo, hi = float(img.min()), float(img.max())
    if hi <= lo:
        return img.clone()
    return _to_uint8((img.float() - lo) * (255.0 / (hi - lo)))


def solarize(img: torch.Tensor, magnitude: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Invert pixels >= threshold, threshold round(U(128, 255)) at M=10 (lower = stronger)."""
    threshold = round(255.0 - _strength(0.0, 127.0, magnitude, generator))
    return torch.where(img < threshold, img, 255 - img)


def solarize_add(img: torch.Tensor, magnitude: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add +- round(U(1, 128)) (M=10) to pixels below 128. In no MBIT policy."""
    addition = round(_sign(generator) * _strength(1.0, 128.0, magnitude, generator))
    return torch.where(img < 128, _to_uint8(img.float() + addition), img)


def equalize(img: torch.Tensor, magnitude: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Histogram-equalize every channel independently."""
    return TF.equalize(img)


def invert(img: torch.Tensor, magnitude: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """255 - pixel. In no MBIT policy."""
    return 255 - img


def vignetting(img: torch.Tensor, magnitude: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Darken the periphery: strength U(0, 0.6) at M=10, centre jitter +-10%, start radius U(0.3, 0.7) W/2."""
    factor = _strength(0.0, 0.6, magnitude, generator)
    _, h, w = img.shape
    cx = (2 * _rand(generator) - 1) * w / 10
    cy = (2 * _rand(generator) - 1) * h / 10
    start = w / 2 * (0.3 + 0.4 * _rand(generator))
    xs = torch.linspace(-w / 2 + cx, w / 2 + cx, w, dtype=torch.float32)
    ys = torch.linspace(-h / 2 + cy, h / 2 + cy, h, dtype=torch.float32)
    x, y = torch.meshgrid(xs, ys, indexing="xy")
    dist = torch.sqrt(x**2 + y**2)
    span = max(float(dist.max()) - start, 1e-6)
    z = ((dist - start) / span).clamp(0, 1) ** 1.2 * factor
    return _to_uint8(img.float() * (1 - z).to(img.device))


# ------------------------------------------------------------------------------ shape ops
def rotate(img: torch.Tensor, magnitude: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Rotate about the centre by +- U(0, 40) degrees at M=10."""
    theta = math.radians(_sign(generator) * _strength(0.0, 40.0, magnitude, generator))
    cos, sin = math.cos(theta), math.sin(theta)
    return _warp_linear(img, (cos, sin, -sin, cos))


def lens_distortion(img: torch.Tensor, magnitude: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Brown-Conrady distortion: k1, k2 = +-0.15 U(0, 0.6), p1, p2 = +-0.1 U(0, 0.6) (M=10), focal = diagonal."""
    coef = [base * _sign(generator) * _strength(0.0, 0.6, magnitude, generator) for base in (0.15, 0.15, 0.1, 0.1)]
    k1, k2, p1, p2 = coef
    _, h, w = img.shape
    f = math.hypot(h, w)
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    x, y = (u - w / 2) / f, (v - h / 2) / f
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return _remap(img, xd * f + w / 2, yd * f + h / 2)


def flip(img: torch.Tensor, magnitude: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip horizontally, vertically or both (1/3 each)."""
    kind = _randint(-1, 1, generator)
    dims = {1: [2], 0: [1], -1: [1, 2]}[kind]
    return img.flip(dims)


def cutout(img: torch.Tensor, magnitude: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill a square of half-side round(U(0, 50) x min(H, W)/224) (M=10), centred in the central 20-80%."""
    _, h, w = img.shape
    half = round(_strength(0.0, 50.0, magnitude, generator) * min(h, w) / 224)
    cy = _randint(int(h * 0.2), int(h * 0.8), generator)
    cx = _randint(int(w * 0.2), int(w * 0.8), generator)
    out = img.clone()
    fill = torch.tensor(fill_value(img.shape[0]), device=img.device).round().to(torch.uint8).view(-1, 1, 1)
    out[:, max(0, cy - half) : min(h, cy + half), max(0, cx - half) : min(w, cx + half)] = fill
    return out


def _shear(img: torch.Tensor, magnitude: float, generator: torch.Generator | None, axis: str) -> torch.Tensor:
    t = math.tan(math.radians(_sign(generator) * _strength(0.0, 15.0, magnitude, generator)))
    return _warp_linear(img, (1.0, -t, 0.0, 1.0) if axis == "x" else (1.0, 0.0, -t, 1.0))


def shear_x(img: torch.Tensor, magnitude: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shear horizontally about the centre by +- U(0, 15) degrees at M=10."""
    return _shear(img, magnitude, generator, "x")


def shear_y(img: torch.Tensor, magnitude: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shear vertically about the centre by +- U(0, 15) degrees at M=10."""
    return _shear(img, magnitude, generator, "y")


def scale(img: torch.Tensor, magnitude: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zoom about the centre by 1 +- U(0, 0.2) at M=10, same canvas."""
    s = 1.0 + _sign(generator) * _strength(0.0, 0.2, magnitude, generator)
    return _warp_linear(img, (1 / s, 0.0, 0.0, 1 / s))


def scale_xy_diff(img: torch.Tensor, magnitude: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zoom x by 1 +- U(0, 0.2) (M=10) and y by U(0.8, 1.2), same canvas."""
    sx = 1.0 + _sign(generator) * _strength(0.0, 0.2, magnitude, generator)
    sy = 0.8 + 0.4 * _rand(generator)
    return _warp_linear(img, (1 / sx, 0.0, 0.0, 1 / sy))


def crop(img: torch.Tensor, magnitude: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random sub-window of 1 - U(0, 0.3) (M=10) of each side, resized back. In no MBIT policy."""
    _, h, w = img.shape
    frac = 1.0 - min(_strength(0.0, 0.3, magnitude, generator), 0.9)
    ch, cw = max(1, round(h * frac)), max(1, round(w * frac))
    top, left = _randint(0, h - ch, generator), _randint(0, w - cw, generator)
    return TF.resize(img[:, top : top + ch, left : left + cw], [h, w], antialias=True)


def resize(img: torch.Tensor, magnitude: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Down-sample by 1 - U(0, 0.5) (M=10) and back up (resolution loss). In no MBIT policy."""
    _, h, w = img.shape
    frac = 1.0 - min(_strength(0.0, 0.5, magnitude, generator), 0.9)
    small = TF.resize(img, [max(1, round(h * frac)), max(1, round(w * frac))], antialias=True)
    return TF.resize(small, [h, w], antialias=False)


# ------------------------------------------------------------------------------ tables
OPS: dict[str, Op] = {
    "mixup": mixup,
    "gaussian_noise": gaussian_noise,
    "saturation": saturation,
    "contrast": contrast,
    "brightness": brightness,
    "sharpness": sharpness,
    "color_casting": color_casting,
    "equalize_yuv": equalize_yuv,
    "posterize": posterize,
    "autocontrast": autocontrast,
    "solarize": solarize,
    "solarize_add": solarize_add,
    "equalize": equalize,
    "invert": invert,
    "vignetting": vignetting,
    "rotate": rotate,
    "lens_distortion": lens_distortion,
    "flip": flip,
    "cutout": cutout,
    "shear_x": shear_x,
    "shear_y": shear_y,
    "scale": scale,
    "scale_xy_diff": scale_xy_diff,
    "crop": crop,
    "resize": resize,
}

#: the colour ops of MBIT's policies (slot "colour")
COLOR_OPS: tuple[str, ...] = (
    "mixup", "vignetting", "gaussian_noise", "saturation", "contrast", "brightness", "sharpness",
    "color_casting", "equalize_yuv", "posterize", "autocontrast", "solarize", "equalize",
)  # fmt: skip
#: the shape ops of MBIT's policies (slot "shape")
SHAPE_OPS: tuple[str, ...] = (
    "rotate", "lens_distortion", "flip", "cutout", "shear_x", "shear_y", "scale", "scale_xy_diff",
)  # fmt: skip
#: implemented for completeness, used by no MBIT policy
EXTRA_OPS: tuple[str, ...] = ("solarize_add", "invert", "crop", "resize")
#: classic RandAugment's op set in MBIT (translations left to the following random crop)
RAND_OPS: tuple[str, ...] = (
    "saturation", "contrast", "brightness", "sharpness", "posterize", "autocontrast", "solarize",
    "equalize", "rotate", "shear_x", "shear_y",
)  # fmt: skip
