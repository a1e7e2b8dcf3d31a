"""Our own ResNets: LDAM-DRW's CIFAR ResNet-32 and the ResNet-10 of classifier-balancing / CDB.

Parameter names follow torchvision (``conv1``, ``bn1``, ``layer1``..., ``downsample``), so the
LDAM-DRW and classifier-balancing checkpoints, which use the same names, load without renaming.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from ..core.errors import ConfigError
from ..core.registry import MODELS
from .staged import StagedBackbone

Shortcut = Literal["A", "B"]


class PadShortcut(nn.Module):
    """Option-A shortcut (He et al. 2016, CIFAR): strided identity, zero-padded channels, no parameters."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        extra = planes - in_planes
        self.pad = (extra // 2, extra - extra // 2)

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, *self.pad))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm plus a residual connection."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: Shortcut = "B") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            if shortcut == "A":
                self.downsample = PadShortcut(in_planes, planes, stride)
            else:
                self.downsample = nn.Sequential(
                    nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
                )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet(StagedBackbone):
    """BasicBlock ResNet. The stem is ImageNet-style (7x7/2 conv and max-pool) or small (3x3/1, no pool).

    ``init='ldam'``: Kaiming-normal (fan-in) on every convolution, as LDAM-DRW's ResNet-32.
    ``init='torchvision'``: Kaiming-normal (fan-out), as torchvision and classifier-balancing.
    """

    def __init__(
        self,
        blocks: Sequence[int],
        widths: Sequence[int],
        in_channels: int = 3,
        small_input: bool = False,
        shortcut: Shortcut = "B",
        init: Literal["ldam", "torchvision"] = "torchvision",
        arch: str = "resnet",
    ) -> None:
        super().__init__()
        if len(blocks) != len(widths) or not blocks:
            raise ConfigError(f"{arch}: blocks {list(blocks)} and widths {list(widths)} must be non-empty and of equal length")
        self.arch = arch
        stem_width = widths[0]
        if small_input:
            self.conv1 = nn.Conv2d(in_channels, stem_width, 3, stride=1, padding=1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, stem_width, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.stage_names: list[str] = []
        in_planes = stem_width
        for i, (count, width) in enumerate(zip(blocks, widths, strict=True)):
            layers = [BasicBlock(in_planes if j == 0 else width, width, (2 if i > 0 and j == 0 else 1), shortcut) for j in range(count)]
            in_planes = width
            name = f"layer{i + 1}"
            self.add_module(name, nn.Sequential(*layers))
            self.stage_names.append(name)
        self.feature_dim = in_planes
        self._init_weights(init)

    def _init_weights(self, init: str) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if init == "ldam":
                    nn.init.kaiming_normal_(m.weight)
                else:
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_stem(self, x: Tensor) -> Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def stages(self) -> list[nn.Module]:
        return [getattr(self, name) for name in self.stage_names]

    def pop_last_stage(self) -> nn.Module:
        """Remove the last stage and return it (BBN moves it into two branches)."""
        name = self.stage_names.pop()
        stage = getattr(self, name)
        delattr(self, name)
        self.feature_dim = _out_channels(self.stages()[-1]) if self.stage_names else self.bn1.num_features
        return stage


def _out_channels(stage: nn.Module) -> int:
    return stage[-1].bn2.num_features  # type: ignore[index]


def make_resnet32(in_channels: int = 3) -> ResNet:
    """The bare LDAM-DRW ResNet-32 (no DropBlock), shared by ``resnet32`` and ``bbn_resnet32``."""
    return ResNet([5, 5, 5], [16, 32, 64], in_channels, small_input=True, shortcut="A", init="ldam", arch="resnet32")


def make_resnet10(in_channels: int = 3, small_input: bool = False) -> ResNet:
    """The bare ResNet-10 (no DropBlock), shared by ``resnet10`` and ``bbn_resnet10``."""
    return ResNet([1, 1, 1, 1], [64, 128, 256, 512], in_channels, small_input=small_input, shortcut="B", arch="resnet10")


@MODELS.register("resnet32")
def resnet32(
    in_channels: int = 3, drop_block_prob: float = 0.0, drop_block_size: int = 5, drop_block_steps: int = 0
) -> ResNet:
    """CIFAR ResNet-32 of LDAM-DRW: 3 stages x 5 BasicBlocks (16/32/64 wide), option-A shortcuts, 64-d features."""
    net = make_resnet32(in_channels)
    net.add_drop_blocks(drop_block_prob, drop_block_size, drop_block_steps)
    return net


@MODELS.register("resnet10")
def resnet10(
    in_channels: int = 3,
    small_input: bool = False,
    drop_block_prob: float = 0.0,
    drop_block_size: int = 5,
    drop_block_steps: int = 0,
) -> ResNet:
    """ImageNet-style ResNet-10 (BasicBlock [1,1,1,1], 512-d) of classifier-balancing; small_input for tiny images."""
    net = make_resnet10(in_channels, small_input)
    net.add_drop_blocks(drop_block_prob, drop_block_size, drop_block_steps)
    return net
