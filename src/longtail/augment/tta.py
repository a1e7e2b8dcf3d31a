"""Test-time augmentation as in MBIT: multi-crop grids and multi-scale views, averaged or voted.

``multi_crop`` cuts a sqrt(K) x sqrt(K) grid of crops evenly spaced over the central region of every
image (``l_region`` of the long side, ``s_region`` of the short side); ``multi_scale`` takes centre
crops of ``crop * (1 + s/100)``, resizes them to ``crop`` and flips / rotates them, one view per name
``<op>_<+-s>`` (op in scale, flip_x, flip_y, rotate_90, rotate_270). ``flips`` multiplies every view by
the horizontal flip (2) or the dihedral group D4 (8: rotations by 0/90/180/270 degrees, each also
flipped; the SIIM-ISIC 2020 winners' TTA), alone or on top of the crops and scales. Views work on any
dtype (uint8 or normalised float batches). :class:`TTA` runs a model on every view and returns the log of the
averaged softmax probabilities (``average``) or of the normalised vote histogram (``vote``), so that
a downstream softmax gives back exactly those probabilities.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence

import torch
import torchvision.transforms.v2.functional as TF

from ..core.errors import ConfigError, DataError
from ..core.registry import METHODS

__all__ = ["CROP_COUNTS", "FLIPS", "SCALE_NAMES", "crop_positions", "flip_views", "multi_crop", "multi_scale", "TTA"]

CROP_COUNTS = (9, 16, 25, 36)
#: ``flips`` settings and the number of views each makes of one view
FLIPS: dict[str, int] = {"none": 1, "hflip": 2, "dihedral": 8}
#: MBIT's default multi-scale view names, in order (``MULTI_SCALE.SCALE_NUM`` takes the first ones)
SCALE_NAMES: tuple[str, ...] = (
    "scale_+00", "flip_x_+00", "rotate_90_+00", "rotate_270_+00",
    "scale_+10", "flip_x_+10", "rotate_90_+10", "rotate_270_+10",
    "scale_+20", "flip_x_+20", "rotate_90_+20", "rotate_270_+20",
    "scale_+30", "flip_x_+30", "rotate_90_+30", "rotate_270_+30",
    "scale_-10", "flip_x_-10", "rotate_90_-10", "rotate_270_-10",
    "flip_y_+00", "flip_y_+10", "flip_y_-10", "flip_y_+20",
)  # fmt: skip
_SCALE_NAME = re.compile(r"^(scale|flip_x|flip_y|rotate_90|rotate_270)_([+-]\d+)$")


def _size(crop_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(crop_size, int):
        return crop_size, crop_size
    h, w = (int(v) for v in crop_size)
    return h, w


def crop_positions(
    height: int, width: int, crop_size: int | Sequence[int], num_crops: int, l_region: float = 1.0, s_region: float = 1.0
) -> list[tuple[int, int]]:
    """(top, left) of each crop, row-major: ``x = x0 + floor(col * (region_w - crop_w) / (sqrt(K) - 1))``.

    The region is ``l_region`` of the long side and ``s_region`` of the short side (at least the crop),
    centred; ``x0 = floor((W - region_w) / 2)``.
    """
    if num_crops not in CROP_COUNTS:
        raise ConfigError(f"tta: crops must be one of {', '.join(map(str, CROP_COUNTS))} (a square grid), got {num_crops}")
    ch, cw = _size(crop_size)
    if ch > height or cw > width:
        raise DataError(f"tta: crop {ch}x{cw} is larger than the {height}x{width} images; set a smaller crop_size")
    rate_w, rate_h = (l_region, s_region) if width >= height else (s_region, l_region)
    region_w, region_h = max(int(width * rate_w), cw), max(int(height * rate_h), ch)
    x0, y0 = int((width - region_w) / 2), int((height - region_h) / 2)
    g = int(round(num_crops**0.5))
    return [
        (y0 + int(row * (region_h - ch) / (g - 1)), x0 + int(col * (region_w - cw) / (g - 1)))
        for row in range(g)
        for col in range(g)
    ]


def _crop_views(batch: torch.Tensor, crop_size: int | Sequence[int], num_crops: int, l_region: float, s_region: float) -> Iterator[torch.Tensor]:
    ch, cw = _size(crop_size)
    for top, left in crop_positions(batch.shape[-2], batch.shape[-1], (ch, cw), num_crops, l_region, s_region):
        yield batch[..., top : top + ch, left : left + cw]


def multi_crop(
    batch: torch.Tensor, crop_size: int | Sequence[int], num_crops: int = 16, l_region: float = 1.0, s_region: float = 1.0
) -> torch.Tensor:
    """The K grid crops of every image: a tensor K x N x C x h x w (see :func:`crop_positions`)."""
    return torch.stack(list(_crop_views(batch, crop_size, num_crops, l_region, s_region)))


def _parse_scale(name: str) -> tuple[str, int]:
    m = _SCALE_NAME.match(name)
    if not m:
        raise ConfigError(f"tta: bad scale view '{name}'; use <op>_<+-percent> with op in scale, flip_x, flip_y, rotate_90, rotate_270 (e.g. flip_x_+10)")
    return m.group(1), int(m.group(2))


def _scale_views(batch: torch.Tensor, crop_size: int | Sequence[int], names: Sequence[str]) -> Iterator[torch.Tensor]:
    ch, cw = _size(crop_size)
    parsed = [_parse_scale(n) for n in names]
    if ch != cw and any(op.startswith("rotate") for op, _ in parsed):
        raise ConfigError(f"tta: rotate_90/rotate_270 views need a square crop_size, got {ch}x{cw}")
    height, width = batch.shape[-2:]
    for op, percent in parsed:
        f = 1.0 + percent / 100.0
        size = [min(max(1, round(ch * f)), height), min(max(1, round(cw * f)), width)]
        view = TF.center_crop(batch, size)
        if size != [ch, cw]:
            view = TF.resize(view, [ch, cw], antialias=True)
        if op == "flip_x":
            view = view.flip(-1)
        elif op == "flip_y":
            view = view.flip(-2)
        elif op == "rotate_90":
            view = torch.rot90(view, 1, dims=(-2, -1))
        elif op == "rotate_270":
            view = torch.rot90(view, -1, dims=(-2, -1))
        yield view


def multi_scale(batch: torch.Tensor, crop_size: int | Sequence[int], names: Sequence[str] = SCALE_NAMES[:12]) -> torch.Tensor:
    """One view per name ``<op>_<+-s>``: centre crop of crop x (1 + s/100) (clipped to the image), resized to crop, then op."""
    return torch.stack(list(_scale_views(batch, crop_size, names)))


def flip_views(view: torch.Tensor, flips: str) -> Iterator[torch.Tensor]:
    """The group's images of one N x C x h x w view: ``none`` the view; ``hflip`` it and ``view.flip(-1)``;
    ``dihedral`` ``rot90(view, k)`` for k = 0..3, then ``rot90(view, k).flip(-1)`` for k = 0..3 (all 8
    symmetries of a square). A lesion has no up, down, left or right, so each is as plausible as the
    original. 90-degree rotations swap height and width, so ``dihedral`` needs a square view (a model
    trained at one size is not shown transposed inputs): a non-square one is a ConfigError.
    """
    if flips not in FLIPS:
        raise ConfigError(f"tta: flips must be one of {', '.join(FLIPS)}, got '{flips}'")
    if flips == "dihedral" and view.shape[-2] != view.shape[-1]:
        raise ConfigError(f"tta: flips 'dihedral' rotates by 90 degrees and needs square views, got {view.shape[-2]}x{view.shape[-1]}; "
                          "set a square crop_size or flips: hflip")
    if flips == "none":
        yield view
    elif flips == "hflip":
        yield view
        yield view.flip(-1)
    else:
        rotations = [torch.rot90(view, k, dims=(-2, -1)) for k in range(4)]
        yield from rotations
        for r in rotations:
            yield r.flip(-1)


@METHODS.register("tta")
class TTA:
    """Test-time augmentation: MBIT multi-crop grid (9/16/25/36) and multi-scale views, x2 flips or x8 dihedral, averaged or voted.

    ``crops``: grid size or None; ``scales``: number of MBIT's default views (first ones of
    :data:`SCALE_NAMES`), a list of view names, or None; ``crop_size`` defaults to 7/8 of the short
    side of the evaluated images (set it to the training crop size); ``scheme``: ``average`` (mean
    softmax) or ``vote`` (fraction of views predicting each class). ``flips``: ``none``, ``hflip``
    (x2) or ``dihedral`` (x8, square views only), applied to every crop and scale view; with crops
    and scales both None the flips see the whole image (its centre ``crop_size`` crop when set).
    """

    def __init__(
        self,
        crops: int | None = 16,
        scales: int | list[str] | None = None,
        scheme: str = "average",
        crop_size: int | list[int] | None = None,
        l_region: float = 1.0,
        s_region: float = 1.0,
        flips: str | None = "none",
    ) -> None:
        flips = "none" if flips is None else str(flips)
        if flips not in FLIPS:
            raise ConfigError(f"tta: flips must be one of {', '.join(FLIPS)}, got '{flips}'")
        if scheme not in ("average", "vote"):
            raise ConfigError(f"tta: scheme must be 'average' or 'vote', got '{scheme}'")
        if crops is not None and crops not in CROP_COUNTS:
            raise ConfigError(f"tta: crops must be one of {', '.join(map(str, CROP_COUNTS))} or null, got {crops}")
        if isinstance(scales, int):
            if not 1 <= scales <= len(SCALE_NAMES):
                raise ConfigError(f"tta: scales must be in [1, {len(SCALE_NAMES)}] (MBIT's default views) or a list of view names, got {scales}")
            scales = list(SCALE_NAMES[:scales])
        names = list(scales or [])
        for name in names:
            _parse_scale(name)
        if crops is None and not names and flips == "none":
            raise ConfigError("tta: nothing to do; set crops (9/16/25/36), scales and/or flips (hflip, dihedral)")
        if flips == "dihedral" and crop_size is not None and len(set(_size(crop_size))) != 1:  # type: ignore[arg-type]
            raise ConfigError(f"tta: flips 'dihedral' rotates by 90 degrees and needs a square crop_size, got {crop_size}; use flips: hflip")
        for r in (l_region, s_region):
            if not 0.0 < float(r) <= 1.0:
                raise ConfigError(f"tta: l_region and s_region must be in (0, 1], got {r}")
        self.crops, self.scale_names, self.scheme, self.flips = crops, names, scheme, flips
        self.crop_size = crop_size
        self.l_region, self.s_region = float(l_region), float(s_region)
        self.activation = "softmax"  # "sigmoid" under eval.unk_class: sigmoid (see predict)

    @property
    def num_views(self) -> int:
        base = (self.crops or 0) + len(self.scale_names)
        return max(base, 1) * FLIPS[self.flips]  # no crops or scales: the flips of the whole image

    def _crop(self, batch: torch.Tensor) -> tuple[int, int]:
        if self.crop_size is not None:
            return _size(self.crop_size)  # type: ignore[arg-type]
        side = max(1, round(min(batch.shape[-2:]) * 7 / 8))
        return side, side

    def _base_views(self, batch: torch.Tensor) -> Iterator[torch.Tensor]:
        if not self.crops and not self.scale_names:  # flips alone: the whole image, or its centre crop_size crop
            if self.crop_size is None:
                yield batch
                return
            ch, cw = _size(self.crop_size)  # type: ignore[arg-type]
            height, width = batch.shape[-2:]
            if ch > height or cw > width:
                raise DataError(f"tta: crop {ch}x{cw} is larger than the {height}x{width} images; set a smaller crop_size")
            yield TF.center_crop(batch, [ch, cw])
            return
        crop = self._crop(batch)
        if self.crops:
            yield from _crop_views(batch, crop, self.crops, self.l_region, self.s_region)
        if self.scale_names:
            yield from _scale_views(batch, crop, self.scale_names)

    def views(self, batch: torch.Tensor) -> Iterator[torch.Tensor]:
        """Every view of the batch (N x C x h x w each), crops first, then scales, each followed by its
        flips (:func:`flip_views`); lazily."""
        for view in self._base_views(batch):
            yield from flip_views(view, self.flips)

    @torch.no_grad()
    def predict(self, model_fn: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor) -> torch.Tensor:
        """Log of the averaged probabilities (or vote fractions) over all views: N x num_classes.

        With ``activation = 'sigmoid'`` (MBIT's ``VALID_ADD_ONE_CLASS``, set from ``eval.unk_class``)
        the per-class sigmoids are averaged instead and their logit is returned, so that a sigmoid
        of the output gives the averaged sigmoid scores.
        """
        total: torch.Tensor | None = None
        for view in self.views(batch):
            logits = model_fn(view).float()
            if self.scheme == "vote":
                scores = torch.nn.functional.one_hot(logits.argmax(dim=1), logits.shape[1]).float()
            elif self.activation == "sigmoid":
                scores = torch.sigmoid(logits)
            else:
                scores = torch.softmax(logits, dim=1)
            total = scores if total is None else total + scores
        assert total is not None
        probs = total / self.num_views
        if self.activation == "sigmoid":
            eps = torch.finfo(probs.dtype).eps
            return torch.logit(probs.clamp(eps, 1.0 - eps))
        return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()

    def __repr__(self) -> str:
        return f"TTA(crops={self.crops}, scales={len(self.scale_names)}, flips={self.flips!r}, scheme={self.scheme!r}, crop_size={self.crop_size})"
