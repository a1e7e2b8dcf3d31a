"""Classification heads: features (N x D) -> logits (N x C).

- :class:`LinearHead`: dot product + optional bias, which may start at the log class prior
  ``log(n_c / N)`` (CDB-loss's prior-initialised bias, seeds.md 4.3) so that the first
  predictions match the training label distribution instead of a uniform one.
- :class:`CosineHead`: LDAM-DRW's ``NormedLinear``: cosine similarity, no bias, no scale (the
  LDAM loss applies its own scale s = 30).
- :class:`LWSHead`: learnable weight scaling (Kang et al. 2020, decoupled stage 2): a frozen
  linear head whose per-class weight norms are re-learned.
- :class:`ScaledLinearHead`: MiSLAS's stage-2 classifier: the trained linear head, trained on, its
  logits times learned per-class scales (``LearnableWeightScaling``).
- :func:`tau_normalize`: post-hoc tau-normalisation of classifier rows.
- :func:`max_norm_project`: weight balancing's MaxNorm, each class row projected into a norm ball.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.errors import ConfigError, DataError

BiasMode = Literal["zero", "log_prior", "none"]
HEAD_KINDS = ("linear", "cosine", "lws", "scaled_linear")
BIAS_MODES = ("zero", "log_prior", "none")


def log_prior(class_counts: Sequence[int] | np.ndarray) -> Tensor:
    """``log(n_c / N)`` per class; every class needs at least one training image."""
    counts = np.asarray(class_counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0:
        raise DataError(f"class_counts must be a non-empty list of per-class counts, got shape {counts.shape}")
    empty = np.flatnonzero(counts <= 0)
    if empty.size:
        raise DataError(
            f"class {int(empty[0])} has no training images, so its log-prior bias is -inf; "
            "drop the class or use model.head_bias=zero"
        )
    return torch.from_numpy(np.log(counts / counts.sum())).float()


class ClassVectorHead(nn.Module):
    """A head holding one weight vector per class (``weight``: classes x features)."""

    weight: Tensor

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]


class LinearHead(ClassVectorHead):
    """``W x + b`` with ``b`` zero, the log class prior, or absent."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        bias: BiasMode = "zero",
        class_counts: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        super().__init__()
        if bias not in BIAS_MODES:
            raise ConfigError(f"head_bias '{bias}' is not one of {', '.join(BIAS_MODES)}")
        if bias == "log_prior":
            if class_counts is None:
                raise ConfigError("model.head_bias=log_prior needs the training class counts; pass class_counts")
            if len(class_counts) != num_classes:
                raise DataError(f"class_counts has {len(class_counts)} entries but the model has {num_classes} classes")
        self.bias_mode = bias
        self.class_counts = None if class_counts is None else [int(c) for c in class_counts]
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        self.bias = nn.Parameter(torch.empty(num_classes)) if bias != "none" else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Linear's weight init; bias as configured (cRT re-initialises the head with this)."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            with torch.no_grad():
                if self.bias_mode == "log_prior":
                    assert self.class_counts is not None
                    self.bias.copy_(log_prior(self.class_counts))
                else:
                    self.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}, bias={self.bias_mode}"


class CosineHead(ClassVectorHead):
    """Cosine similarity of normalised features and normalised class weights, in [-1, 1].

    LDAM-DRW's ``NormedLinear``: no bias and no scale; the margin loss multiplies by s.
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # LDAM draws U(-1, 1) and renormalises each class vector; only the direction matters
        with torch.no_grad():
            self.weight.uniform_(-1.0, 1.0)
            self.weight.div_(self.weight.norm(dim=1, keepdim=True).clamp_min(1e-12))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}"


class LWSHead(ClassVectorHead):
    """Learnable weight scaling: ``s_c * (w_c . x) + b_c`` with ``w``, ``b`` frozen, ``s`` learnt.

    Built from a trained :class:`LinearHead`; the scales start at 1, so before training it
    returns exactly the linear head's logits. ``w`` and ``b`` are buffers: they are saved in
    checkpoints but no optimizer can update them.
    """

    weight: Tensor
    bias: Tensor | None

    def __init__(self, linear: LinearHead) -> None:
        super().__init__()
        self.register_buffer("weight", linear.weight.detach().clone())
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())
        self.bias_mode = linear.bias_mode
        self.class_counts = linear.class_counts
        self.scales = nn.Parameter(torch.ones(linear.num_classes, device=linear.weight.device, dtype=linear.weight.dtype))

    def reset_parameters(self) -> None:
        """Back to scales of 1 (the frozen linear head it was built from)."""
        with torch.no_grad():
            self.scales.fill_(1.0)

    def forward(self, x: Tensor) -> Tensor:
        out = F.linear(x, self.weight) * self.scales
        return out if self.bias is None else out + self.bias

    def to_linear(self) -> LinearHead:
        """The equivalent plain linear head (scales folded into the weight rows)."""
        head = LinearHead(self.in_features, self.num_classes, bias=self.bias_mode, class_counts=self.class_counts)
        head = head.to(device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            head.weight.copy_(self.weight * self.scales.detach()[:, None])
            if head.bias is not None and self.bias is not None:
                head.bias.copy_(self.bias)
        return head

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}"


class ScaledLinearHead(ClassVectorHead):
    """``s_c * (w_c . x + b_c)`` with ``w``, ``b`` and ``s`` all learnt (MiSLAS ``LearnableWeightScaling``).

    Unlike :class:`LWSHead` (Kang et al.: ``w``, ``b`` frozen, only the weight term scaled) the linear
    head goes on training, and the scale multiplies the whole logit, bias included, as MiSLAS's
    ``train_stage2.py`` applies ``learned_norm * classifier(feat)``. Built from a trained
    :class:`LinearHead` with scales of 1, so before training it returns exactly that head's logits.
    The scales are ``logit_scales`` (not ``scales``), so a checkpoint tells this head from LWS.
    """

    def __init__(self, linear: LinearHead) -> None:
        super().__init__()
        self.weight = nn.Parameter(linear.weight.detach().clone())
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())
        self.bias_mode = linear.bias_mode
        self.class_counts = linear.class_counts
        self.logit_scales = nn.Parameter(torch.ones(linear.num_classes, device=linear.weight.device, dtype=linear.weight.dtype))

    def reset_parameters(self) -> None:
        """A freshly initialised linear head (as cRT's) with scales of 1."""
        fresh = LinearHead(self.in_features, self.num_classes, bias=self.bias_mode, class_counts=self.class_counts)
        with torch.no_grad():
            self.weight.copy_(fresh.weight)
            if self.bias is not None and fresh.bias is not None:
                self.bias.copy_(fresh.bias)
            self.logit_scales.fill_(1.0)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias) * self.logit_scales

    def to_linear(self) -> LinearHead:
        """The equivalent plain linear head (scales folded into the weight rows and the bias)."""
        head = LinearHead(self.in_features, self.num_classes, bias=self.bias_mode, class_counts=self.class_counts)
        head = head.to(device=self.weight.device, dtype=self.weight.dtype)
        scales = self.logit_scales.detach()
        with torch.no_grad():
            head.weight.copy_(self.weight * scales[:, None])
            if head.bias is not None and self.bias is not None:
                head.bias.copy_(self.bias * scales)
        return head

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}, bias={self.bias_mode}"


def tau_normalize_weight(weight: Tensor | np.ndarray, tau: float) -> Tensor | np.ndarray:
    """``W_c / ||W_c||^tau`` row-wise (rows = classes); tau = 0 returns the weight unchanged."""
    if isinstance(weight, torch.Tensor):
        norms = weight.norm(dim=1, keepdim=True).clamp_min(1e-12)
    else:
        weight = np.asarray(weight, dtype=np.float64)
        norms = np.maximum(np.linalg.norm(weight, axis=1, keepdims=True), 1e-12)
    return weight / norms**tau


def tau_normalize(weight: Tensor, tau: float) -> Tensor:
    """``w_c / ||w_c||^tau`` for every class row (Kang et al. 2020); tau=0 leaves ``weight`` as is.

    One implementation (:func:`tau_normalize_weight`) serves training-time heads and post-hoc evaluation.
    """
    return tau_normalize_weight(weight, tau)


def max_norm_threshold(weight: Tensor, thresh: float, relative: bool = True) -> float:
    """The norm bound ``t`` of weight balancing's MaxNorm (Alshammari et al., CVPR 2022).

    ``relative``: ``min_c ||w_c|| + thresh * (max_c ||w_c|| - min_c ||w_c||)`` over the rows of
    ``weight`` (ShadeAlsha/LTR-weight-balancing ``MaxNorm_via_PGD.setPerLayerThresh``, taken once
    when the constrained training starts); otherwise ``thresh`` itself.
    """
    if not relative:
        return float(thresh)
    norms = weight.detach().float().norm(dim=1)
    return float(norms.min() + thresh * (norms.max() - norms.min()))


def max_norm_project(weight: Tensor, threshold: float) -> Tensor:
    """``w_c * min(1, t / ||w_c||)`` per class row: the Euclidean projection of each row onto the ball of
    radius ``t``; rows already inside are multiplied by exactly 1 (left as they are)."""
    norms = weight.norm(dim=1, keepdim=True)
    return weight * torch.clamp(threshold / norms.clamp_min(1e-12), max=1.0)


def make_head(
    kind: str,
    in_features: int,
    num_classes: int,
    bias: BiasMode = "zero",
    class_counts: Sequence[int] | np.ndarray | None = None,
) -> nn.Module:
    """A freshly initialised head of ``kind`` (``lws`` and ``scaled_linear`` wrap a fresh linear head)."""
    if kind not in HEAD_KINDS:
        raise ConfigError(f"head '{kind}' is not one of {', '.join(HEAD_KINDS)}")
    if kind == "cosine":
        if bias == "log_prior":
            raise ConfigError("model.head=cosine has no bias, so model.head_bias=log_prior cannot apply; use head_bias=zero")
        return CosineHead(in_features, num_classes)
    linear = LinearHead(in_features, num_classes, bias=bias, class_counts=class_counts)
    if kind == "scaled_linear":
        return ScaledLinearHead(linear)
    return LWSHead(linear) if kind == "lws" else linear


def head_kind(head: nn.Module) -> str:
    """'linear', 'cosine', 'lws' or 'scaled_linear' for a head built here."""
    for kind, cls in (("linear", LinearHead), ("cosine", CosineHead), ("lws", LWSHead), ("scaled_linear", ScaledLinearHead)):
        if isinstance(head, cls):
            return kind
    raise TypeError(f"unknown head type {type(head).__name__}")
