"""MBIT's Modified RandAugment policies and classic RandAugment, as per-sample transforms.

A policy is a list of *slots*. Each slot draws one op uniformly from its op list, re-drawing if that
op has already been applied to this image, and applies it with probability ``prob``; slots run in
order. ``v1_1`` (one colour slot + one shape slot) is what MBIT trains with. Both transforms take and
return one uint8 tensor C x H x W (``batched = False``: they run in DataLoader workers) and use
torch's global RNG, which the engine seeds and DataLoader workers re-seed, so runs are reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..core.errors import ConfigError, DataError, did_you_mean
from ..core.registry import TRANSFORMS
from .ops import COLOR_OPS, OPS, RAND_OPS, SHAPE_OPS

__all__ = ["POLICIES", "SlotAugment", "ModifiedRandAugment", "RandAugment", "TrainingImagePool", "policy_slots"]

_GROUPS: dict[str, tuple[str, ...]] = {"colour": COLOR_OPS, "shape": SHAPE_OPS, "all": COLOR_OPS + SHAPE_OPS}

#: policy name -> the op group of each slot (MBIT ``lib/data_transform/modified_randaugment.py``)
POLICIES: dict[str, tuple[str, ...]] = {
    "v0_0": ("all",),
    "v1_0": ("all", "all"),
    "v1_1": ("colour", "shape"),
    "v2_0": ("all", "all", "all"),
    "v2_1": ("colour", "shape", "shape"),
    "v2_2": ("colour", "colour", "shape"),
    "v3_0": ("all", "all", "all", "all"),
    "v3_1": ("colour", "colour", "shape", "shape"),
}

MAX_MAGNITUDE = 20.0


def policy_slots(policy: str) -> list[tuple[str, ...]]:
    """The op names of each slot of a Modified RandAugment policy."""
    if policy not in POLICIES:
        raise ConfigError(
            f"modified_randaugment: unknown policy '{policy}'{did_you_mean(policy, POLICIES)}; valid: {', '.join(POLICIES)}"
        )
    return [_GROUPS[group] for group in POLICIES[policy]]


class TrainingImagePool:
    """Another training image, drawn uniformly with torch's global RNG, for the ``mixup`` op.

    Holds the training split itself (not a copy): ``load`` gives the stored uint8 image before any
    augmentation, as MBIT's Mixup reads a second raw training image.
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __call__(self) -> torch.Tensor:
        if len(self.dataset) == 0:
            raise DataError("the mixup op needs training images; the training split is empty")
        return self.dataset.load(int(torch.randint(len(self.dataset), ())))


class SlotAugment:
    """Apply slots of ops in order; each slot picks an op not yet applied and applies it with ``prob``.

    ``image_pool`` is a callable returning another random training image (uint8 C x H x W) for the
    ``mixup`` op; while it is None, ``mixup`` is left out of every slot. The engine gives every
    transform whose ``wants_image_pool`` is true a :class:`TrainingImagePool` of the training split
    (``Pipeline.attach_image_pool``).
    """

    batched = False
    wants_image_pool = False

    def __init__(
        self,
        slots: Sequence[Sequence[str]],
        prob: float,
        magnitude: float,
        image_pool: Callable[[], torch.Tensor] | None = None,
        name: str = "slot_augment",
    ) -> None:
        if not 0.0 <= float(prob) <= 1.0:
            raise ConfigError(f"{name}: prob must be in [0, 1], got {prob}")
        if not 0.0 <= float(magnitude) <= MAX_MAGNITUDE:
            raise ConfigError(f"{name}: magnitude must be in [0, {MAX_MAGNITUDE:g}] (10 = the published ranges), got {magnitude}")
        for slot in slots:
            for op in slot:
                if op not in OPS:
                    raise ConfigError(f"{name}: unknown op '{op}'{did_you_mean(op, OPS)}")
        self.slots = [tuple(slot) for slot in slots]
        self.prob = float(prob)
        self.magnitude = float(magnitude)
        self.image_pool = image_pool
        self.name = name

    def plan(self) -> list[str]:
        """Draw the ops to apply to one image, in order (consumes the global RNG like ``__call__``)."""
        applied: list[str] = []
        for slot in self.slots:
            candidates = [op for op in slot if op not in applied and (op != "mixup" or self.image_pool is not None)]
            if not candidates:
                continue
            op = candidates[int(torch.randint(len(candidates), ()))]
            if float(torch.rand(())) < self.prob:
                applied.append(op)
        return applied

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if not (isinstance(img, torch.Tensor) and img.dtype == torch.uint8 and img.ndim == 3):
            got = f"{img.dtype} tensor of shape {tuple(img.shape)}" if isinstance(img, torch.Tensor) else type(img).__name__
            raise DataError(f"{self.name} expects one uint8 image tensor C x H x W, got {got}; put it before 'normalize' and batched transforms")
        out = img
        for op in self.plan():
            if op == "mixup":
                out = OPS[op](out, self.magnitude, None, other=self.image_pool())  # type: ignore[misc]
            else:
                out = OPS[op](out, self.magnitude, None)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(slots={len(self.slots)}, prob={self.prob}, magnitude={self.magnitude:g})"


@TRANSFORMS.register("modified_randaugment")
class ModifiedRandAugment(SlotAugment):
    """MBIT Modified RandAugment: policy slots (v1_1 = 1 colour + 1 shape op), prob 0.7, magnitude 10.

    Policies: ``v0_0`` 1 slot over all 21 ops; ``v1_0``/``v2_0``/``v3_0`` 2/3/4 such slots; ``v1_1``
    colour + shape; ``v2_1`` colour + 2 shape; ``v2_2`` 2 colour + shape; ``v3_1`` 2 colour + 2 shape.
    The ``mixup`` op (blend with another training image) runs when an ``image_pool`` is set; in a
    training run the engine sets one unless ``mixup: false``.
    """

    def __init__(
        self,
        policy: str = "v1_1",
        prob: float = 0.7,
        magnitude: float = 10.0,
        image_pool: Callable[[], torch.Tensor] | None = None,
        mixup: bool = True,
    ) -> None:
        super().__init__(policy_slots(policy), prob, magnitude, image_pool, name="modified_randaugment")
        self.policy = policy
        self.wants_image_pool = bool(mixup) and any("mixup" in slot for slot in self.slots)

    def __repr__(self) -> str:
        return f"ModifiedRandAugment(policy={self.policy!r}, prob={self.prob}, magnitude={self.magnitude:g})"


@TRANSFORMS.register("randaugment")
class RandAugment(SlotAugment):
    """Classic RandAugment as in MBIT: num_layers distinct ops of 11, each with probability prob (0.5).

    Ops: saturation, contrast, brightness, sharpness, posterize, autocontrast, solarize, equalize,
    rotate, shear_x, shear_y (translations are left to the random crop that follows).
    """

    def __init__(self, num_layers: int = 2, prob: float = 0.5, magnitude: float = 10.0) -> None:
        if not 1 <= int(num_layers) <= len(RAND_OPS):
            raise ConfigError(f"randaugment: num_layers must be in [1, {len(RAND_OPS)}] (ops never repeat), got {num_layers}")
        super().__init__([RAND_OPS] * int(num_layers), prob, magnitude, None, name="randaugment")
        self.num_layers = int(num_layers)

    def __repr__(self) -> str:
        return f"RandAugment(num_layers={self.num_layers}, prob={self.prob}, magnitude={self.magnitude:g})"
