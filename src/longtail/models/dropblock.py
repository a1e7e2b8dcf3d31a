"""DropBlock (Ghiasi et al. 2018) with MBIT's linear warm-up of the drop probability.

MBIT inserts a DropBlock after each of the last two backbone stages and ramps ``drop_prob``
linearly from 0 to its target over ``steps`` forward calls (seeds.md 2.6). MBIT advances that
ramp on *every* forward, validation included, so how fast it ramps depends on how often one
validates. Here the step counter advances on training forwards only. The counter is a buffer,
so it is saved in checkpoints and a resumed run continues the ramp where it stopped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.errors import ConfigError


class DropBlock2d(nn.Module):
    """Drop contiguous ``block_size`` x ``block_size`` regions of a feature map during training.

    The seed mask is Bernoulli with rate ``gamma = drop_prob / block_size**2`` at every spatial
    position, shared across channels. Max-pooling grows each seed into a block, and the kept
    activations are rescaled by ``numel / kept`` so the expected activation stays the same. In
    eval mode the module is the identity.

    ``steps > 1``: the k-th training forward (k = 0, 1, ...) uses
    ``prob * min(k, steps - 1) / (steps - 1)``, the values of ``linspace(0, prob, steps)`` that
    MBIT's ``LinearScheduler`` steps through. ``steps <= 1``: ``prob`` from the first step.
    """

    step: Tensor

    def __init__(self, prob: float, block_size: int = 5, steps: int = 0) -> None:
        super().__init__()
        if not 0.0 <= prob < 1.0:
            raise ConfigError(f"drop_block_prob={prob} must be in [0, 1), e.g. 0.1")
        if block_size < 1:
            raise ConfigError(f"drop_block_size={block_size} must be a positive integer, e.g. 5")
        self.prob = float(prob)
        self.block_size = int(block_size)
        self.steps = int(steps)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    @property
    def drop_prob(self) -> float:
        """The drop probability the next training forward will use."""
        if self.steps <= 1:
            return self.prob
        k = min(int(self.step), self.steps - 1)
        return self.prob * k / (self.steps - 1)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return x
        p = self.drop_prob
        self.step += 1
        if p == 0.0:
            return x
        return drop_block(x, p, self.block_size)

    def extra_repr(self) -> str:
        return f"prob={self.prob}, block_size={self.block_size}, steps={self.steps}"


def drop_block(x: Tensor, drop_prob: float, block_size: int) -> Tensor:
    """One DropBlock draw on an N x C x H x W map (the functional core of :class:`DropBlock2d`)."""
    n, _, h, w = x.shape
    gamma = drop_prob / block_size**2
    seeds = (torch.rand(n, 1, h, w, device=x.device) < gamma).float()
    # a position is dropped when any seed lies within the block centred on it
    blocks = F.max_pool2d(seeds, kernel_size=block_size, stride=1, padding=block_size // 2)
    keep = 1.0 - blocks[:, :, :h, :w]  # an even block size pads one row/column too many
    scale = keep.numel() / keep.sum().clamp_min(1.0)  # in float32: a bf16 sum would round the count
    return x * (keep * scale).to(x.dtype)
