"""Batched tensor augmentation with per-image randomness, and the train/eval pipeline builder.

Batched ops take N x C x H x W (float in [0, 1], or uint8) on any device and draw their random
parameters **per image**: a torchvision v2 transform applied to a batch would crop, flip and jitter
every image of the batch the same way. Randomness uses torch's global RNG (seeded by the engine).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from ..core.errors import ConfigError
from ..core.registry import TRANSFORMS
from .decode import as_hw, resize_uint8

if TYPE_CHECKING:
    from ..core.schema import Component


class BatchOp(ABC):
    """Base for batched ops; a single C x H x W image is treated as a batch of one.

    A batch of clips (N x C x T x H x W) is folded into a batch of N images so that every op draws
    its parameters once per clip and applies them to all of its frames: geometric ops
    (``clip_fold = "channels"``) see a clip as one image with C*T channels, pixel-value ops
    (``clip_fold = "height"``, e.g. colour jitter) as one image of its frames stacked vertically.
    """

    batched = True
    random = True
    clip_fold = "channels"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            return self.forward(x.unsqueeze(0)).squeeze(0)
        if x.ndim == 5:
            return self._forward_clips(x)
        return self.forward(x)

    def _forward_clips(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, h, w = x.shape
        if self.clip_fold == "channels":
            out = self.forward(x.reshape(n, c * t, h, w))
            return out.reshape(n, c, t, *out.shape[-2:])
        out = self.forward(x.reshape(n, c, t * h, w))
        return out.reshape(n, c, t, h, w)

    @abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ...

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def _uniform(n: int, lo: float, hi: float, device: torch.device) -> torch.Tensor:
    return torch.rand(n, device="cpu").to(device) * (hi - lo) + lo  # CPU draw: same stream on any device


def _randint(n: int, high: torch.Tensor | int, device: torch.device) -> torch.Tensor:
    """Per-image integers in [0, high) (high may differ per image)."""
    high_t = torch.as_tensor(high, dtype=torch.float64).expand(n)
    return (torch.rand(n, dtype=torch.float64) * high_t).floor().long().to(device)


def gather_crops(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Crop an h x w window at a different (top, left) from every image, in one ``gather``."""
    n, c, H, W = x.shape
    rows = top.view(n, 1, 1) + torch.arange(h, device=x.device).view(1, h, 1)
    flat = (rows * W + left.view(n, 1, 1) + torch.arange(w, device=x.device).view(1, 1, w)).view(n, 1, h * w)
    out = torch.gather(x.reshape(n, c, H * W), 2, flat.expand(n, c, h * w))
    return out.view(n, c, h, w)


def _restore(out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if like.dtype == torch.uint8:
        return out.round_().clamp_(0, 255).to(torch.uint8)
    return out


def _check_p(p: float, op: str) -> float:
    if not 0.0 <= float(p) <= 1.0:
        raise ConfigError(f"{op}.p must be a probability in [0, 1], got {p}; use e.g. 0.5")
    return float(p)


def _picked(n: int, p: float) -> torch.Tensor:
    """Per-image Bernoulli(p) mask, drawn on the CPU (the same stream on any device)."""
    return torch.rand(n) < p


@TRANSFORMS.register("random_crop")
class RandomCrop(BatchOp):
    """Random `size` crop per image after zero/reflect `padding` (CIFAR: size 32, padding 4)."""

    def __init__(self, size: int | Sequence[int], padding: int = 0, padding_mode: str = "constant") -> None:
        if padding_mode not in ("constant", "reflect", "replicate"):
            raise ConfigError(f"random_crop.padding_mode must be constant, reflect or replicate, got '{padding_mode}'")
        self.size, self.padding, self.padding_mode = as_hw(size), int(padding), padding_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding:
            p = self.padding
            if self.padding_mode == "constant":
                x = F.pad(x, (p, p, p, p))
            else:
                x = F.pad(x.float(), (p, p, p, p), mode=self.padding_mode).to(x.dtype)
        h, w = self.size
        H, W = x.shape[-2:]
        if h > H or w > W:
            raise ConfigError(f"random_crop size {h}x{w} is larger than the {H}x{W} (padded) image; lower it or set data.image_size")
        n = x.shape[0]
        return gather_crops(x, _randint(n, H - h + 1, x.device), _randint(n, W - w + 1, x.device), h, w)


@TRANSFORMS.register("random_crop_in_rate")
class RandomCropInRate(BatchOp):
    """MBIT's `RandomCropInRate`: a random `size` crop whose window lies in the central region.

    The region keeps ``l_region`` of the long side and ``s_region`` of the short side, centred
    (``x_l = int(W * (1 - rate) / 2)``); the crop's top-left corner is drawn uniformly from the
    integer positions that keep the crop inside it, per image. Region 1.0 x 1.0 is a plain
    random crop. MBIT refuses a region exactly the size of the crop; here that is a fixed crop.
    """

    def __init__(self, size: int | Sequence[int], l_region: float = 1.0, s_region: float = 1.0) -> None:
        for name, r in (("l_region", l_region), ("s_region", s_region)):
            if not 0.0 < float(r) <= 1.0:
                raise ConfigError(f"random_crop_in_rate.{name} must be in (0, 1], got {r}")
        self.size, self.l_region, self.s_region = as_hw(size), float(l_region), float(s_region)

    def window(self, H: int, W: int) -> tuple[int, int, int, int]:
        """(first top, last top, first left, last left) allowed for an H x W image."""
        h, w = self.size
        x_rate, y_rate = (self.l_region, self.s_region) if W >= H else (self.s_region, self.l_region)
        x_l, y_l = int(W * (1.0 - x_rate) / 2), int(H * (1.0 - y_rate) / 2)
        x_r, y_r = W - x_l - w, H - y_l - h
        if x_r < x_l or y_r < y_l:
            raise ConfigError(
                f"random_crop_in_rate: a {h}x{w} crop does not fit the central {H - 2 * y_l}x{W - 2 * x_l} region of "
                f"the {H}x{W} image; raise l_region/s_region, lower size or raise data.image_size"
            )
        return y_l, y_r, x_l, x_r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, (H, W) = x.shape[0], x.shape[-2:]
        y_l, y_r, x_l, x_r = self.window(H, W)
        top = _randint(n, y_r - y_l + 1, x.device) + y_l
        left = _randint(n, x_r - x_l + 1, x.device) + x_l
        return gather_crops(x, top, left, *self.size)


@TRANSFORMS.register("per_image_mean")
class PerImageMean(BatchOp):
    """Subtract each image's own per-channel mean (MBIT with `FIX_MEAN_VAR.ENABLE: False`).

    Put it last, with ``data.normalize: none`` so the appended normalisation changes nothing.
    """

    random = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            raise ConfigError("per_image_mean works on the float batch; list it among the batched transforms, after the per-sample ones")
        return x - x.mean(dim=(-2, -1), keepdim=True)


@TRANSFORMS.register("random_resized_crop")
class RandomResizedCrop(BatchOp):
    """Random area/aspect crop per image resized to `size` (ImageNet style; roi_align, antialiased)."""

    def __init__(self, size: int | Sequence[int], scale: Sequence[float] = (0.08, 1.0),
                 ratio: Sequence[float] = (3 / 4, 4 / 3)) -> None:
        self.size = as_hw(size)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))

    def boxes(self, n: int, H: int, W: int) -> torch.Tensor:
        """torchvision's sampling (10 tries, then a centre fallback), vectorised over the batch."""
        tries = 10
        area = H * W * (torch.rand(n, tries, dtype=torch.float64) * (self.scale[1] - self.scale[0]) + self.scale[0])
        lo, hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        ar = torch.exp(torch.rand(n, tries, dtype=torch.float64) * (hi - lo) + lo)
        w = torch.sqrt(area * ar).round()
        h = torch.sqrt(area / ar).round()
        ok = (w > 0) & (w <= W) & (h > 0) & (h <= H)
        first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((n,), -1))
        in_ratio = W / H
        if in_ratio < self.ratio[0]:
            fw, fh = W, round(W / self.ratio[0])
        elif in_ratio > self.ratio[1]:
            fw, fh = round(H * self.ratio[1]), H
        else:
            fw, fh = W, H
        rows = torch.arange(n)
        bw = torch.where(first >= 0, w[rows, first.clamp_min(0)], torch.tensor(float(fw), dtype=torch.float64))
        bh = torch.where(first >= 0, h[rows, first.clamp_min(0)], torch.tensor(float(fh), dtype=torch.float64))
        top = (torch.rand(n, dtype=torch.float64) * (H - bh + 1)).floor()
        left = (torch.rand(n, dtype=torch.float64) * (W - bw + 1)).floor()
        centre = first < 0
        top = torch.where(centre, ((H - bh) / 2).round(), top)
        left = torch.where(centre, ((W - bw) / 2).round(), left)
        return torch.stack([left, top, left + bw, top + bh], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, H, W = x.shape
        b = self.boxes(n, H, W).to(device=x.device, dtype=torch.float32)
        rois = torch.cat([torch.arange(n, device=x.device, dtype=torch.float32).view(n, 1), b], 1)
        out = roi_align(x.float(), rois, output_size=self.size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)
        return _restore(out, x)


@TRANSFORMS.register("center_crop")
class CenterCrop(BatchOp):
    """Central `size` crop (deterministic)."""

    random = False

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = as_hw(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.size
        H, W = x.shape[-2:]
        if h > H or w > W:
            raise ConfigError(f"center_crop size {h}x{w} is larger than the {H}x{W} image; lower it or raise data.image_size")
        top, left = (H - h) // 2, (W - w) // 2
        return x[..., top : top + h, left : left + w]


@TRANSFORMS.register("resize")
class Resize(BatchOp):
    """Antialiased bilinear resize to `size` (int = square)."""

    random = False

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = as_hw(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            return resize_uint8(x, self.size)  # type: ignore[arg-type]
        if tuple(x.shape[-2:]) == self.size:
            return x
        return F.interpolate(x, size=self.size, mode="bilinear", antialias=True, align_corners=False)


class _Flip(BatchOp):
    dim = -1

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"flip probability p must be in [0, 1], got {p}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = (torch.rand(x.shape[0]) < self.p).to(x.device).view(-1, 1, 1, 1)
        return torch.where(mask, x.flip(self.dim), x)


@TRANSFORMS.register("hflip")
class HFlip(_Flip):
    """Horizontal flip of each image with probability `p`."""

    dim = -1


@TRANSFORMS.register("vflip")
class VFlip(_Flip):
    """Vertical flip of each image with probability `p`."""

    dim = -2


def _factor_range(value: float | Sequence[float], name: str, centre: float = 1.0) -> tuple[float, float] | None:
    if isinstance(value, (int, float)):
        if value < 0:
            raise ConfigError(f"color_jitter.{name} must be >= 0, got {value}")
        return None if value == 0 else (max(0.0, centre - value), centre + value)
    lo, hi = float(value[0]), float(value[1])
    return None if lo == hi == centre else (lo, hi)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, N x 1 x H x W."""
    if x.shape[1] == 1:
        return x
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return 0.299 * r + 0.587 * g + 0.114 * b


@TRANSFORMS.register("color_jitter")
class ColorJitter(BatchOp):
    """Per-image brightness/contrast/saturation factors (and approximate `hue` shift), in that order; each image with probability `p`.

    With ``p < 1`` each image is jittered with probability `p` (independently per image) and the
    others are left exactly as they were: torchvision's ``RandomApply([ColorJitter(...)], p)``,
    as in SADE's test-time views (p = 0.8). The mask is drawn only when ``p < 1``, so the default
    draws the same random numbers as before the parameter existed.
    """

    clip_fold = "height"  # channel-wise: a clip's frames share one factor and one contrast mean

    def __init__(self, brightness: float | Sequence[float] = 0.0, contrast: float | Sequence[float] = 0.0,
                 saturation: float | Sequence[float] = 0.0, hue: float = 0.0, p: float = 1.0) -> None:
        self.brightness = _factor_range(brightness, "brightness")
        self.contrast = _factor_range(contrast, "contrast")
        self.saturation = _factor_range(saturation, "saturation")
        if not 0.0 <= hue <= 0.5:
            raise ConfigError(f"color_jitter.hue must be in [0, 0.5], got {hue}")
        self.hue = float(hue)
        self.p = _check_p(p, "color_jitter")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p >= 1.0:
            return self._jitter(x)
        mask = _picked(x.shape[0], self.p)
        out = self._jitter(x)
        return torch.where(mask.to(x.device).view(-1, 1, 1, 1), out, x.to(out.dtype))

    def _jitter(self, x: torch.Tensor) -> torch.Tensor:
        top = 255.0 if x.dtype == torch.uint8 else 1.0
        y = x.float()
        n, dev = y.shape[0], y.device
        if self.brightness:
            y = (y * _uniform(n, *self.brightness, dev).view(n, 1, 1, 1)).clamp_(0, top)
        if self.contrast:
            mean = grayscale(y).mean((1, 2, 3), keepdim=True)
            f = _uniform(n, *self.contrast, dev).view(n, 1, 1, 1)
            y = (f * y + (1 - f) * mean).clamp_(0, top)
        if self.saturation and y.shape[1] == 3:
            f = _uniform(n, *self.saturation, dev).view(n, 1, 1, 1)
            y = (f * y + (1 - f) * grayscale(y)).clamp_(0, top)
        if self.hue and y.shape[1] == 3:
            y = self._hue(y, _uniform(n, -self.hue, self.hue, dev)).clamp_(0, top)
        return _restore(y, x)

    @staticmethod
    def _hue(y: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """Rotate chroma in YIQ space by ``shift`` turns (a fast approximation of an HSV hue shift)."""
        to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], device=y.device)
        from_yiq = torch.linalg.inv(to_yiq)
        yiq = torch.einsum("ij,njhw->nihw", to_yiq, y)
        a = shift * 2 * math.pi
        cos, sin = torch.cos(a).view(-1, 1, 1), torch.sin(a).view(-1, 1, 1)
        i, q = yiq[:, 1], yiq[:, 2]
        yiq = torch.stack([yiq[:, 0], cos * i - sin * q, sin * i + cos * q], 1)
        return torch.einsum("ij,njhw->nihw", from_yiq, yiq)


@TRANSFORMS.register("random_grayscale")
class RandomGrayscale(BatchOp):
    """Replace each image, with probability `p`, by its ITU-R 601 luma repeated over the 3 channels.

    torchvision's ``RandomGrayscale(p)`` (default 0.1; SADE's test-time views use 0.2), per image.
    The luma is ``0.299 R + 0.587 G + 0.114 B`` (PIL's ``convert("L")``; torchvision's tensor
    version uses 0.2989 for R), rounded for uint8. A 1-channel image is returned unchanged.
    """

    clip_fold = "height"  # channel-wise: a clip's frames are all grey or all colour

    def __init__(self, p: float = 0.1) -> None:
        self.p = _check_p(p, "random_grayscale")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = _picked(x.shape[0], self.p)
        c = x.shape[1]
        if c == 1 or not mask.any():
            return x
        if c != 3:
            raise ConfigError(f"random_grayscale needs 1- or 3-channel images, got {c} channels; drop it for this data")
        grey = _restore(grayscale(x.float()), x).to(x.dtype).expand_as(x)
        return torch.where(mask.to(x.device).view(-1, 1, 1, 1), grey, x)


def _gaussian_kernels(sigma: torch.Tensor, size: int) -> torch.Tensor:
    """One normalised 1-D Gaussian of length `size` (odd) per sigma: len(sigma) x size."""
    t = torch.arange(size, device=sigma.device, dtype=sigma.dtype) - (size - 1) / 2
    k = torch.exp(-0.5 * (t.view(1, -1) / sigma.view(-1, 1)) ** 2)
    return k / k.sum(1, keepdim=True)


@TRANSFORMS.register("gaussian_blur")
class GaussianBlur(BatchOp):
    """Gaussian blur of each image, with probability `p`, with its own sigma drawn uniformly in `sigma`.

    SADE's (and MoCo v2's) test-time views: ``RandomApply([GaussianBlur([0.1, 2.0])], p=0.2)``,
    where that GaussianBlur is PIL's ``ImageFilter.GaussianBlur(radius=sigma)``. PIL's `radius` is
    the standard deviation of the Gaussian it approximates with extended box blurs; this op is an
    exact (sampled, normalised) Gaussian with ``sigma = radius``, separable, with reflect padding
    like torchvision's ``gaussian_blur`` (PIL repeats the edge pixels instead), so it differs from
    PIL by a few grey levels inside the image and more along its border. `sigma` is a
    ``[lo, hi]`` range or one fixed value; `kernel_size` (odd) defaults to
    ``2 * ceil(3 * sigma_max) + 1`` and is cut, per axis, to ``2 * side - 1`` on an image too small
    for it (the widest kernel reflect padding allows). All images share the kernel size, each gets
    its own weights, and the batch is blurred by one grouped convolution per axis.
    """

    def __init__(self, p: float = 1.0, sigma: float | Sequence[float] = (0.1, 2.0), kernel_size: int | None = None) -> None:
        self.p = _check_p(p, "gaussian_blur")
        if isinstance(sigma, (int, float)):
            lo = hi = float(sigma)
        elif len(sigma) != 2:
            raise ConfigError(f"gaussian_blur.sigma must be one value or a [lo, hi] pair, got {list(sigma)}")
        else:
            lo, hi = float(sigma[0]), float(sigma[1])
        if lo <= 0 or hi <= 0:
            raise ConfigError(f"gaussian_blur.sigma must be > 0, got {sigma}; use e.g. [0.1, 2.0]")
        if lo > hi:
            raise ConfigError(f"gaussian_blur.sigma must be [lo, hi] with lo <= hi, got [{lo}, {hi}]; swap them")
        self.sigma = (lo, hi)
        if kernel_size is None:
            kernel_size = 2 * math.ceil(3 * hi) + 1
        elif isinstance(kernel_size, bool) or int(kernel_size) != kernel_size or kernel_size < 1 or kernel_size % 2 == 0:
            raise ConfigError(f"gaussian_blur.kernel_size must be an odd integer >= 1, got {kernel_size}; "
                              f"use an odd size such as {max(1, int(kernel_size) | 1)} or leave it unset")
        self.kernel_size = int(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, H, W = x.shape
        mask = _picked(n, self.p) if self.p < 1.0 else None
        lo, hi = self.sigma
        sigma = _uniform(n, lo, hi, x.device) if lo < hi else torch.full((n,), lo, device=x.device)
        if mask is not None:
            if not mask.any():
                return x
            idx = mask.nonzero().view(-1).to(x.device)
            out = x.clone()
            out[idx] = self._blur(x[idx], sigma[idx])
            return out
        return self._blur(x, sigma)

    def _blur(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        n, c, H, W = x.shape
        y = x.float().reshape(1, n * c, H, W)  # every channel of every image is its own group
        for axis, side in ((-1, W), (-2, H)):
            size = min(self.kernel_size, 2 * side - 1)
            if size == 1:
                continue
            half = size // 2
            k = _gaussian_kernels(sigma.float(), size).repeat_interleave(c, 0)  # (n * c) x size
            if axis == -1:
                y = F.conv2d(F.pad(y, (half, half, 0, 0), mode="reflect"), k.view(n * c, 1, 1, size), groups=n * c)
            else:
                y = F.conv2d(F.pad(y, (0, 0, half, half), mode="reflect"), k.view(n * c, 1, size, 1), groups=n * c)
        return _restore(y.view(n, c, H, W), x).to(x.dtype)  # same dtype whether or not p < 1


@TRANSFORMS.register("random_rotation")
class RandomRotation(BatchOp):
    """Rotate each image by an angle drawn uniformly in [-`degrees`, `degrees`] (zero fill)."""

    def __init__(self, degrees: float) -> None:
        self.degrees = float(degrees)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, H, W = x.shape
        a = _uniform(n, -self.degrees, self.degrees, x.device) * (math.pi / 180.0)
        cos, sin = torch.cos(a), torch.sin(a)
        aspect = W / H
        theta = torch.zeros(n, 2, 3, device=x.device)
        theta[:, 0, 0], theta[:, 0, 1] = cos, -sin / aspect
        theta[:, 1, 0], theta[:, 1, 1] = sin * aspect, cos
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return _restore(out, x)


class Normalize:
    """(x - mean) / std per channel on a float batch in [0, 1]; appended to every pipeline."""

    batched = True
    random = False

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]
        self._cache: dict[tuple[Any, ...], tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        key = (x.device, x.dtype)
        if key not in self._cache:
            m = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(-1, 1, 1)
            s = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(-1, 1, 1)
            self._cache[key] = (m, s)
        m, s = self._cache[key]
        if x.ndim == 5:  # clips N x C x T x H x W: channels are still dimension 1
            m, s = m.unsqueeze(-1), s.unsqueeze(-1)
        return (x - m) / s

    def __getstate__(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "_cache": {}}


class Compose:
    """Apply callables in order (picklable, so DataLoader workers can use it)."""

    def __init__(self, ops: Sequence[Callable[[torch.Tensor], torch.Tensor]]) -> None:
        self.ops = list(ops)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            x = op(x)
        return x

    def __repr__(self) -> str:
        return f"Compose({self.ops!r})"


class BatchPipeline(Compose):
    """uint8 (or float in [0, 1]) batch -> float32 in [0, 1] -> batched ops -> normalise."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32).div_(255.0) if x.dtype == torch.uint8 else x.to(torch.float32)
        return super().__call__(x)


@dataclass
class Pipeline:
    """``sample``: per-image ops for the Dataset (or None); ``batch``: batched ops + normalisation."""

    sample: Callable[[torch.Tensor], torch.Tensor] | None
    batch: Callable[[torch.Tensor], torch.Tensor]
    train: bool
    ops: list[Any] = field(default_factory=list)

    def attach_image_pool(self, pool: Callable[[], torch.Tensor]) -> int:
        """Give ``pool`` (another training image per call) to every op that asks for one
        (``wants_image_pool``: the ``mixup`` op of modified RandAugment); returns how many."""
        takers = [op for op in self.ops if getattr(op, "wants_image_pool", False)]
        for op in takers:
            op.image_pool = pool
        return len(takers)


def build_pipeline(transforms: Sequence["Component"], mean: Sequence[float], std: Sequence[float], train: bool) -> Pipeline:
    """Per-sample ops (``batched = False``) first, then batched ops; normalisation is appended last."""
    from ..core.registry import TRANSFORMS as registry

    where = "data.train_transforms" if train else "data.eval_transforms"
    sample_ops: list[Any] = []
    batch_ops: list[Any] = []
    for i, entry in enumerate(transforms):
        try:
            op = registry.create(entry.name, **entry.kwargs)
        except ConfigError as e:
            raise ConfigError(f"{where}.{i}: {e}") from None
        if getattr(op, "batched", True):
            batch_ops.append(op)
        elif batch_ops:
            raise ConfigError(
                f"{where}.{i}: per-sample transform '{entry.name}' comes after batched transform "
                f"'{transforms[i - 1].name}'; list per-sample transforms first"
            )
        else:
            sample_ops.append(op)
    if len(mean) != len(std):
        raise ConfigError(f"normalisation mean has {len(mean)} values but std has {len(std)}")
    norm = Normalize(mean, std)
    sample = None if not sample_ops else (sample_ops[0] if len(sample_ops) == 1 else Compose(sample_ops))
    return Pipeline(sample=sample, batch=BatchPipeline([*batch_ops, norm]), train=train, ops=[*sample_ops, *batch_ops, norm])
