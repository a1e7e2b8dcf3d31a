"""Label-aware smoothing (MiSLAS: Zhong, Cui, Liu, Jia, "Improving Calibration for Long-Tailed Recognition", CVPR 2021).

Label smoothing whose strength follows the class size: a large class, on which a long-tailed model is
the most over-confident, is smoothed more than a small one. With ``n_1`` the largest and ``n_K`` the
smallest training count and ``r_y = (n_y - n_K) / (n_1 - n_K)`` in [0, 1], the smoothing of class y
runs from ``smooth_tail`` (r = 0) to ``smooth_head`` (r = 1) along one of the official shapes::

    concave  eps_y = tail + (head - tail) * sin(pi r / 2)
    linear   eps_y = tail + (head - tail) * r
    convex   eps_y = tail + (head - tail) * (1 - cos(pi r / 2))   (the official head + (head - tail) sin(3 pi / 2 + pi r / 2))
    exp      eps_y = tail + (head - tail) * r ** power

and the loss of image i is ``(1 - eps_{y_i}) CE_i + eps_{y_i} mean_c(-log p_ic)``, reduced by the batch
mean (the official ``loss.mean()``). With equal class counts r is 0 / 0 (the official NaN); here it
is 1 for every class, so every class gets ``smooth_head``: plain label smoothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import ConfigError
from ..core.registry import LOSSES
from .base import LongTailLoss, check_choice

Shape = Literal["concave", "linear", "convex", "exp"]
SHAPES = ("concave", "linear", "convex", "exp")


def smoothing_per_class(class_counts: Sequence[int] | np.ndarray, smooth_head: float, smooth_tail: float,
                        shape: str = "concave", power: float | None = None) -> np.ndarray:
    """``eps_c`` of every class (float64, C): ``smooth_tail`` at the smallest count, ``smooth_head`` at the largest."""
    counts = np.asarray(class_counts, dtype=np.float64)
    span = counts.max() - counts.min()
    r = (counts - counts.min()) / span if span > 0 else np.ones_like(counts)
    if shape == "concave":
        profile = np.sin(r * math.pi / 2)
    elif shape == "linear":
        profile = r
    elif shape == "convex":
        profile = 1.0 - np.cos(r * math.pi / 2)
    else:
        profile = r ** float(power)  # type: ignore[arg-type]
    return smooth_tail + (smooth_head - smooth_tail) * profile


@LOSSES.register("las")
class LabelAwareSmoothing(LongTailLoss):
    """Label-aware smoothing (MiSLAS, Zhong et al., CVPR 2021): label smoothing from smooth_tail to smooth_head by class size."""

    smoothing: torch.Tensor

    def __init__(self, class_counts: Sequence[int], smooth_head: float = 0.3, smooth_tail: float = 0.0,
                 shape: Shape = "concave", power: float | None = None) -> None:
        super().__init__(class_counts)
        for key, value in (("smooth_head", smooth_head), ("smooth_tail", smooth_tail)):
            if not 0.0 <= float(value) <= 1.0:
                raise ConfigError(f"{key}: a smoothing strength must be in [0, 1], got {value}")
        check_choice("shape", shape, SHAPES)
        if shape == "exp" and (power is None or not float(power) > 0 or not math.isfinite(float(power))):
            raise ConfigError(f"power: shape 'exp' needs a finite power > 0 (eps = tail + (head - tail) r^power), got {power}")
        if shape != "exp" and power is not None:
            raise ConfigError(f"power applies to shape 'exp' only; remove it or set shape: exp (shape is '{shape}')")
        self.smooth_head, self.smooth_tail, self.shape = float(smooth_head), float(smooth_tail), shape
        self.power = None if power is None else float(power)
        eps = smoothing_per_class(np.asarray(class_counts), self.smooth_head, self.smooth_tail, shape, self.power)
        self.register_buffer("smoothing", torch.as_tensor(eps, dtype=torch.float32), persistent=False)

    def compute(self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor | None, sample_weight: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits, dim=1)
        nll = -logp.gather(1, targets[:, None]).squeeze(1)
        eps = self.smoothing[targets]
        per_sample = (1.0 - eps) * nll - eps * logp.mean(1)
        return self.batch_mean(per_sample, targets, sample_weight)

    def extra_repr(self) -> str:
        power = "" if self.power is None else f", power={self.power:g}"
        return f"smooth_head={self.smooth_head:g}, smooth_tail={self.smooth_tail:g}, shape={self.shape}{power}"
