"""Augmentation: MBIT's Modified RandAugment ops and policies, classic RandAugment, label mixing
(Mixup, CutMix, Remix) and test-time augmentation (multi-crop / multi-scale, flips / dihedral).

Importing this package registers ``modified_randaugment`` and ``randaugment`` in ``TRANSFORMS`` and
``mixup``, ``cutmix``, ``remix`` and ``tta`` in ``METHODS``.
"""

from . import mixing, ops, randaugment, tta
from .mixing import CutMix, Mixup, Remix, cutmix_box, remix_label_weights
from .ops import COLOR_OPS, EXTRA_OPS, OPS, RAND_OPS, SHAPE_OPS
from .randaugment import POLICIES, ModifiedRandAugment, RandAugment
from .tta import TTA, crop_positions, flip_views, multi_crop, multi_scale

__all__ = [
    "mixing", "ops", "randaugment", "tta",
    "Mixup", "CutMix", "Remix", "cutmix_box", "remix_label_weights",
    "OPS", "COLOR_OPS", "SHAPE_OPS", "EXTRA_OPS", "RAND_OPS",
    "POLICIES", "ModifiedRandAugment", "RandAugment",
    "TTA", "crop_positions", "flip_views", "multi_crop", "multi_scale",
]  # fmt: skip
