"""A backbone seen as stem -> stages -> global average pooling.

Seeing a CNN this way is what lets DropBlock go after its last two stages (MBIT) and lets BBN
split it into a shared trunk and two copies of the last stage, whatever the CNN family.
Subclasses say how to run the stem and which modules are the stages. They do not rename their
parameters, so weight files in the original layout (torchvision, LDAM-DRW) still load.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .dropblock import DropBlock2d


class StagedBackbone(nn.Module, ABC):
    """Base class: ``forward(x) -> N x feature_dim`` pooled features."""

    feature_dim: int
    arch: str

    def __init__(self) -> None:
        super().__init__()
        self.drop_blocks = nn.ModuleList()

    @abstractmethod
    def forward_stem(self, x: Tensor) -> Tensor:
        ...

    @abstractmethod
    def stages(self) -> list[nn.Module]:
        ...

    def add_drop_blocks(self, prob: float, block_size: int = 5, steps: int = 0, count: int = 2) -> None:
        """Put a DropBlock after each of the last ``count`` stages (none when ``prob`` is 0)."""
        self.drop_blocks = nn.ModuleList(DropBlock2d(prob, block_size, steps) for _ in range(count if prob > 0 else 0))

    def forward_maps(self, x: Tensor) -> Tensor:
        """The last feature map, before pooling."""
        x = self.forward_stem(x)
        stages = self.stages()
        first = len(stages) - len(self.drop_blocks)
        for i, stage in enumerate(stages):
            x = stage(x)
            if i >= first:
                x = self.drop_blocks[i - first](x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return global_pool(self.forward_maps(x))


def global_pool(x: Tensor) -> Tensor:
    """N x C x H x W -> N x C by spatial averaging."""
    return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
