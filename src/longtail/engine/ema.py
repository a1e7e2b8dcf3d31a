"""Exponential moving average of the weights (``train.ema``), on ``torch.optim.swa_utils.AveragedModel``.

Why: fine-tuning a pretrained network on a small, imbalanced set (HAM10000) with a few hundred steps
per epoch gives noisy weights from one step to the next; the average of the recent weights
validates more smoothly and usually generalises a little better (Polyak averaging; timm's
``ModelEmaV3``, done here with torch alone so longtail needs no new dependency).

After every optimizer step that changed the weights, ``ema = d * ema + (1 - d) * w`` for every
parameter and floating-point buffer (BatchNorm's running statistics are averaged with the weights
they belong to, ``use_buffers=True``); integer buffers (``num_batches_tracked``) are copied. The first
update copies the weights (AveragedModel's rule), so the average starts from the weights after the
stage's first step. With ``warmup`` the n-th update (n = updates before it, from 1) uses
``min(decay, (1 + n) / (10 + n))`` (TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``),
so a short run is not dominated by its first steps.

One :class:`WeightEMA` lives for one stage: a stage may swap or re-initialise the head, which an
average over the earlier stage's weights cannot follow, so each stage starts its own average.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from ..core.errors import ConfigError

__all__ = ["WeightEMA", "ema_decay"]


def ema_decay(decay: float, updates: int, warmup: bool) -> float:
    """The decay of the update after ``updates`` earlier ones (``updates >= 1``; the first update is a copy)."""
    return min(decay, (1.0 + updates) / (10.0 + updates)) if warmup else decay


class WeightEMA:
    """The averaged copy of a model: ``update`` after each optimizer step, ``model`` to evaluate and save."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = False) -> None:
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"train.ema.decay must be in (0, 1), got {decay}")
        self.decay, self.warmup = float(decay), bool(warmup)
        self._averaged = AveragedModel(model, multi_avg_fn=self._average, use_buffers=True)
        self._averaged.module.requires_grad_(False)  # never trained, only averaged into
        self._averaged.module.eval()

    @property
    def model(self) -> nn.Module:
        """The averaged model (same class and state-dict keys as the trained one)."""
        return self._averaged.module

    @property
    def updates(self) -> int:
        """Optimizer steps averaged in so far (this stage)."""
        return int(self._averaged.n_averaged)

    @torch.no_grad()
    def _average(self, ema: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        # AveragedModel calls this once per (device, dtype) group, from the second update on
        d = ema_decay(self.decay, int(n_averaged), self.warmup)
        for e, w in zip(ema, current):
            if e.is_floating_point() or e.is_complex():
                e.lerp_(w, 1.0 - d)  # e + (1 - d) (w - e) = d e + (1 - d) w
            else:
                e.copy_(w)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Average the weights ``model`` holds now into the copy."""
        self._averaged.update_parameters(model)

    def state_dict(self) -> dict[str, Any]:
        """What ``last.pt`` keeps so a resume continues the average exactly."""
        return {"model": self.model.state_dict(), "updates": self.updates, "decay": self.decay, "warmup": self.warmup}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self._averaged.n_averaged.fill_(int(state["updates"]))
