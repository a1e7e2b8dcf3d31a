"""A small, fast CNN for 8x8 to 32x32 images (digits, MedMNIST-size smoke runs)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

from ..core.errors import ConfigError
from ..core.registry import MODELS
from .staged import StagedBackbone

Norm = Literal["batch", "group"]


def _conv_bn_relu(cin: int, cout: int, norm: Norm = "batch") -> list[nn.Module]:
    # group norm (up to 8 groups): batch-independent, so N processes without SyncBatchNorm (CPU)
    # train exactly what one process trains on the global batch
    layer = nn.BatchNorm2d(cout) if norm == "batch" else nn.GroupNorm(math.gcd(8, cout), cout)
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), layer, nn.ReLU(inplace=True)]


class SmallCNN(StagedBackbone):
    """Stages of ``convs_per_stage`` (conv3x3-norm-ReLU), halving the resolution before every stage after the first."""

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = (32, 64, 128), convs_per_stage: int = 2, norm: Norm = "batch") -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if not widths or min(widths) < 1 or convs_per_stage < 1:
            raise ConfigError(f"small_cnn: widths {widths} must be positive and convs_per_stage >= 1")
        if norm not in ("batch", "group"):
            raise ConfigError(f"small_cnn: norm '{norm}' is not batch or group; use one of them")
        self.arch = "small_cnn"
        self.layers = nn.ModuleList()
        cin = in_channels
        for i, width in enumerate(widths):
            mods: list[nn.Module] = [nn.MaxPool2d(2, ceil_mode=True)] if i > 0 else []
            for j in range(convs_per_stage):
                mods += _conv_bn_relu(cin if j == 0 else width, width, norm)
            cin = width
            self.layers.append(nn.Sequential(*mods))
        self.feature_dim = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_stem(self, x: Tensor) -> Tensor:
        return x

    def stages(self) -> list[nn.Module]:
        return list(self.layers)


@MODELS.register("small_cnn")
def small_cnn(
    in_channels: int = 3,
    widths: Sequence[int] = (32, 64, 128),
    convs_per_stage: int = 2,
    drop_block_prob: float = 0.0,
    drop_block_size: int = 3,
    drop_block_steps: int = 0,
    norm: Norm = "batch",
) -> SmallCNN:
    """Small fast CNN for 8x8..32x32 inputs (e.g. digits): conv-norm-ReLU stages (BatchNorm, or GroupNorm), 128-d features."""
    net = SmallCNN(in_channels, widths, convs_per_stage, norm)
    net.add_drop_blocks(drop_block_prob, drop_block_size, drop_block_steps)
    return net
