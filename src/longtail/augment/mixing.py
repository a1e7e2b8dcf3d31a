"""Label-mixing training methods on a batch: Mixup, CutMix and Remix.

Each is a callable ``(x: float N x C x H x W, y: LongTensor N) -> (x_mixed, y_a, y_b, lam)`` where
image i is mixed with image ``perm[i]`` of the same batch, ``y_b = y[perm]`` and ``lam`` (float
tensor N) is the weight of ``y_a`` in the target: the loss is
``lam_i * L(z_i, y_a_i) + (1 - lam_i) * L(z_i, y_b_i)``, i.e. with longtail losses
``L(z, y_a, sample_weight=lam) + L(z, y_b, sample_weight=1 - lam)``. A per-sample ``lam`` is what lets
Remix move a pair's label to its minority class. Randomness uses torch's global RNG (seeded by the
engine). Constructors accept ``class_counts`` so the engine can always pass it; only Remix uses it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch

from ..core.errors import ConfigError, DataError
from ..core.registry import METHODS

__all__ = ["LabelMixing", "Mixup", "CutMix", "Remix", "cutmix_box", "remix_label_weights"]

MixOutput = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class LabelMixing(ABC):
    """Shared parts: the Beta(alpha, alpha) draw, the in-batch permutation and input checks."""

    name = "mixing"

    def __init__(self, alpha: float = 1.0, class_counts: Sequence[int] | None = None) -> None:
        if not float(alpha) > 0:
            raise ConfigError(f"{self.name}: alpha must be > 0 (Beta(alpha, alpha) mixing weights), got {alpha}")
        self.alpha = float(alpha)
        self.class_counts = None if class_counts is None else [int(c) for c in class_counts]
        a = torch.tensor(self.alpha, dtype=torch.float64)
        self._beta = torch.distributions.Beta(a, a, validate_args=False)

    def _lam(self) -> float:
        return float(self._beta.sample())

    def _check(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.ndim not in (4, 5) or not x.is_floating_point():
            raise DataError(f"{self.name}: expects a float image batch N x C x H x W (or clips N x C x T x H x W), got {x.dtype} of shape {tuple(x.shape)}")
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise DataError(f"{self.name}: expects one integer label per image, got labels of shape {tuple(y.shape)} for {x.shape[0]} images")
        return torch.randperm(x.shape[0], device=x.device)

    @abstractmethod
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> MixOutput:
        ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alpha={self.alpha:g})"


@METHODS.register("mixup")
class Mixup(LabelMixing):
    """Mixup (Zhang et al. 2018): x = lam x_i + (1 - lam) x_j, lam ~ Beta(alpha, alpha), one per batch."""

    name = "mixup"

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> MixOutput:
        perm = self._check(x, y)
        lam = self._lam()
        mixed = lam * x + (1.0 - lam) * x[perm]
        return mixed, y, y[perm], torch.full((x.shape[0],), lam, dtype=x.dtype, device=x.device)


def cutmix_box(height: int, width: int, lam: float) -> tuple[int, int, int, int]:
    """CutMix box (top, bottom, left, right): sides sqrt(1 - lam) x H, W, centre uniform, clipped."""
    ratio = (1.0 - lam) ** 0.5
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = int(torch.randint(height, ())), int(torch.randint(width, ()))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return top, bottom, left, right


@METHODS.register("cutmix")
class CutMix(LabelMixing):
    """CutMix (Yun et al. 2019): paste a box of x_j into x_i; lam = 1 - box area / image area (after clipping)."""

    name = "cutmix"

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> MixOutput:
        perm = self._check(x, y)
        h, w = x.shape[-2:]
        top, bottom, left, right = cutmix_box(h, w, self._lam())
        mixed = x.clone()
        mixed[..., top:bottom, left:right] = x[perm][..., top:bottom, left:right]  # clips: the same box in every frame
        lam = 1.0 - (bottom - top) * (right - left) / (h * w)
        return mixed, y, y[perm], torch.full((x.shape[0],), lam, dtype=x.dtype, device=x.device)


def remix_label_weights(lam: torch.Tensor, n_a: torch.Tensor, n_b: torch.Tensor, kappa: float, tau: float) -> torch.Tensor:
    """Remix label weight of y_a given the image weight ``lam`` of x_a and the class sizes n_a, n_b.

    0 if ``n_a / n_b >= kappa`` and ``lam < tau`` (the minority y_b takes the whole label);
    1 if ``n_a / n_b <= 1 / kappa`` and ``1 - lam < tau`` (the minority y_a takes it); else ``lam``.
    """
    ratio = n_a.double() / n_b.double()
    out = lam.clone()
    out = torch.where((ratio >= kappa) & (lam < tau), torch.zeros_like(lam), out)
    out = torch.where((ratio <= 1.0 / kappa) & (1.0 - lam < tau), torch.ones_like(lam), out)
    return out


@METHODS.register("remix")
class Remix(LabelMixing):
    """Remix (Chou et al. 2020): mixup images, but give the label to the minority class (kappa 3, tau 0.5)."""

    name = "remix"

    def __init__(self, alpha: float = 1.0, class_counts: Sequence[int] | None = None, kappa: float = 3.0, tau: float = 0.5) -> None:
        super().__init__(alpha, class_counts)
        if self.class_counts is None:
            raise ConfigError("remix: needs class_counts (the training images per class); the engine passes them")
        if min(self.class_counts) <= 0:
            raise ConfigError("remix: every class needs at least one training image (a class count is 0)")
        if not float(kappa) >= 1.0 or not 0.0 <= float(tau) <= 1.0:
            raise ConfigError(f"remix: need kappa >= 1 and tau in [0, 1], got kappa={kappa}, tau={tau}")
        self.kappa, self.tau = float(kappa), float(tau)
        self._counts = torch.tensor(self.class_counts, dtype=torch.float64)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> MixOutput:
        perm = self._check(x, y)
        if int(y.min()) < 0 or int(y.max()) >= len(self._counts):
            raise DataError(f"remix: labels must be in [0, {len(self._counts)}), got [{int(y.min())}, {int(y.max())}]")
        lam = self._lam()
        mixed = lam * x + (1.0 - lam) * x[perm]
        counts = self._counts.to(y.device)
        image_lam = torch.full((x.shape[0],), lam, dtype=torch.float64, device=x.device)
        label_lam = remix_label_weights(image_lam, counts[y], counts[y[perm]], self.kappa, self.tau)
        return mixed, y, y[perm], label_lam.to(x.dtype)

    def __repr__(self) -> str:
        return f"Remix(alpha={self.alpha:g}, kappa={self.kappa:g}, tau={self.tau:g})"

