"""GCL: Gaussian clouded logit adjustment (Li, Cheung, Lu, CVPR 2022; official code Keke921/GCLLoss ``losses.py``).

Every logit of class j is pushed down by a random amount that grows from 0 for the largest class to
``noise_mul`` for the smallest (``m_j = log n_max - log n_j`` over its maximum): rare classes get a
wider "cloud" of logits, so their features must sit further from the boundary. The noise is
``|N(0, 1/3)|`` clamped to [0, 1], drawn independently for every element of the N x C cosine logits
(all classes, not only the target), from torch's global CPU generator as the official
``normal.Normal(0, 1/3).sample(shape)`` does: the engine seeds that generator and saves and restores it
in every checkpoint, so a seeded run draws the same clouds and ``--resume`` continues the stream
exactly. Predictions are the plain cosine logits; the loss is never used at evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..core.registry import LOSSES
from .base import LongTailLoss, check_non_negative
from .functional import cross_entropy_terms, focal_modulator

NOISE_STD = 1.0 / 3.0  # the official normal.Normal(0, 1/3): scale is the standard deviation
NOISE_CLAMP = 1.0  # then clamp(-1, 1): three standard deviations


def cloud_amplitudes(class_counts: torch.Tensor) -> torch.Tensor:
    """``m_j / max_k m_k`` with ``m_j = log n_max - log n_j``: 0 for the largest class, 1 for the smallest.

    All zeros when every class has the same count (the official code divides 0 by 0 there)."""
    m = class_counts.double().log()
    m = m.max() - m
    top = m.max()
    return (m / top if top > 0 else torch.zeros_like(m)).float()


def draw_cloud_noise(shape: torch.Size | tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
    """``|clamp(N(0, 1/3), -1, 1)|`` on the CPU: bit for bit the official draw for the same generator state."""
    return torch.normal(0.0, NOISE_STD, size=tuple(shape), generator=generator).clamp_(-NOISE_CLAMP, NOISE_CLAMP).abs_()


def clouded_logits(
    cosine: torch.Tensor, targets: torch.Tensor, noise: torch.Tensor, amplitudes: torch.Tensor, noise_mul: float, margin: float
) -> torch.Tensor:
    """``c_ij - noise_mul * noise_ij * a_j - margin * [j = y_i]``: the cloud on every logit, the margin on the target only."""
    z = cosine - noise_mul * noise * amplitudes[None, :]
    if margin:
        z = z - margin * F.one_hot(targets, cosine.shape[1]).to(z.dtype)
    return z


@LOSSES.register("gcl")
class GCLLoss(LongTailLoss):
    """GCL (Li et al., CVPR 2022): CE on scale * (cosine - |N(0, 1/3)| noise growing to rare classes - target margin); cosine head.

    Meant for the cosine head (``model.head: cosine``), whose logits lie in [-1, 1]. ``gamma = 0``: the
    class-weighted mean of the CE terms (the official ``train_cls=False``, stage 1); ``gamma > 0``: the
    official ``train_cls=True`` focal form (stage 2), ``mean_i (1 - q_i)^gamma w_{y_i} CE_i`` with
    ``q_i = exp(-w_{y_i} CE_i)`` detached, a batch mean. ``generator`` (an attribute, None by default)
    replaces torch's global CPU generator for standalone use; the engine leaves it None.
    """

    def __init__(self, class_counts: Sequence[int], margin: float = 0.0, scale: float = 30.0, noise_mul: float = 0.5, gamma: float = 0.0) -> None:
        super().__init__(class_counts)
        for name, value in (("margin", margin), ("scale", scale), ("noise_mul", noise_mul), ("gamma", gamma)):
            check_non_negative(name, value)
        self.margin, self.scale, self.noise_mul, self.gamma = float(margin), float(scale), float(noise_mul), float(gamma)
        self.register_buffer("amplitudes", cloud_amplitudes(self.class_counts), persistent=False)
        self.generator: torch.Generator | None = None

    def compute(self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor | None, sample_weight: torch.Tensor) -> torch.Tensor:
        noise = draw_cloud_noise(logits.shape, self.generator).to(logits.device)
        z = self.scale * clouded_logits(logits, targets, noise, self.amplitudes, self.noise_mul, self.margin)
        ce = cross_entropy_terms(z, targets)
        if self.gamma == 0:
            return self.weighted_mean(ce, targets, sample_weight)
        modulator = focal_modulator((self.sample_class_weights(targets) * ce).detach(), self.gamma)
        return self.batch_mean(modulator * ce, targets, sample_weight)
