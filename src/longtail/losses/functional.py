"""Per-sample / per-element loss terms shared by several loss families (pure tensor functions)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy_terms(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Per-sample cross-entropy ``-log softmax(z)_y`` (N,), optionally label-smoothed."""
    logp = F.log_softmax(logits, dim=1)
    nll = -logp.gather(1, targets[:, None]).squeeze(1)
    if label_smoothing:
        return (1.0 - label_smoothing) * nll - label_smoothing * logp.mean(1)
    return nll


def focal_modulator(ce: torch.Tensor, gamma: float) -> torch.Tensor:
    """``(1 - p_t)^gamma`` with ``p_t = exp(-ce)`` the true-class probability (clamped away from 1)."""
    if gamma == 0:
        return torch.ones_like(ce)
    return (1.0 - torch.exp(-ce)).clamp_min(1e-12).pow(gamma)


def softmax_focal_terms(logits: torch.Tensor, targets: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample softmax focal loss ``(1 - p_t)^gamma * CE`` with the unweighted ``p_t`` (N,)."""
    ce = cross_entropy_terms(logits, targets)
    return focal_modulator(ce, gamma) * ce


def sigmoid_signs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``s * z`` with ``s = +1`` at the target column and ``-1`` elsewhere (one-vs-all sigmoid)."""
    onehot = F.one_hot(targets, logits.shape[1]).to(logits.dtype)
    return (2.0 * onehot - 1.0) * logits


def sigmoid_focal_elements(logits: torch.Tensor, targets: torch.Tensor, gamma: float) -> torch.Tensor:
    """Element-wise (N x C) BCE-with-logits against one-hot times ``(1 - p_t)^gamma``.

    ``p_t = sigmoid(z)`` at the target and ``1 - sigmoid(z)`` elsewhere, i.e. ``sigmoid(s*z)``; both
    the BCE ``-log sigmoid(s*z)`` and the modulator ``sigmoid(-s*z)^gamma`` are computed in log space.
    """
    sz = sigmoid_signs(logits, targets)
    bce = F.softplus(-sz)
    if gamma == 0:
        return bce
    return torch.exp(gamma * F.logsigmoid(-sz)) * bce


def ldam_margins(class_counts: torch.Tensor, max_margin: float) -> torch.Tensor:
    """LDAM margins ``m_c ∝ n_c^(-1/4)`` rescaled so the largest (rarest class) equals ``max_margin``."""
    m = class_counts.double().pow(-0.25)
    return (m * (max_margin / m.max())).float()


def subtract_target_margin(logits: torch.Tensor, targets: torch.Tensor, margins: torch.Tensor) -> torch.Tensor:
    """``z - m_y * onehot(y)``: the LDAM enforced margin on the true-class logit."""
    return logits - F.one_hot(targets, logits.shape[1]).to(logits.dtype) * margins[targets][:, None]
