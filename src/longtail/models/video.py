"""3D backbones for clips (N x C x T x H x W -> N x D features).

- ``r3d_18``, ``mc3_18``, ``r2plus1d_18``: torchvision's video ResNets (Kinetics-400 weights with
  ``model.pretrained``), final linear layer removed, as the image wrapper does.
- ``resnext3d_101``: the 3D ResNeXt-101 (cardinality 32, shortcut B) of Hara, Kataoka and Satoh,
  "Can spatiotemporal 3D CNNs retrace the history of 2D CNNs and ImageNet?" (CVPR 2018), the
  backbone of CDB loss's EGTEA experiments. Module names follow that model, so its Kinetics file
  ``resnext-101-kinetics.pth`` (a ``state_dict`` with ``module.``-prefixed keys) loads through
  ``model.weights`` as is; its 400-way ``fc`` is dropped. ``resnext3d`` is the same family with
  its depth and widths as arguments (tiny variants for tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torchvision.models as tvm
from torch import Tensor, nn

from ..core.errors import ConfigError
from ..core.registry import MODELS
from .torchvision_backbone import fetch_imagenet_weights
from .weights import load_backbone_weights


class TorchvisionVideoBackbone(nn.Module):
    """A torchvision video ResNet without its ``fc``; the stem is rebuilt for other than 3 channels."""

    def __init__(self, arch: str, in_channels: int = 3, pretrained: bool = False) -> None:
        super().__init__()
        net: Any = tvm.get_model(arch, weights=None)
        self.feature_dim = int(net.fc.in_features)
        net.fc = nn.Identity()
        conv = net.stem[0]
        if conv.in_channels != in_channels:
            net.stem[0] = nn.Conv3d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None)
        self.net = net
        self.takes_clips = True
        self.arch = f"torchvision:{arch}"
        self.classifier_prefixes = ("net.fc.",)
        if pretrained:  # Kinetics-400 weights (torchvision's DEFAULT for these models)
            load_backbone_weights(self, fetch_imagenet_weights(arch), f"torchvision '{arch}' Kinetics-400 weights")

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def _video_factory(arch: str) -> Any:
    def build(in_channels: int = 3, pretrained: bool = False) -> TorchvisionVideoBackbone:
        return TorchvisionVideoBackbone(arch, in_channels, pretrained)

    build.__doc__ = f"torchvision's {arch} video ResNet for clips (C x T x H x W), 512-d features; Kinetics-400 weights with pretrained."
    build.__name__ = arch
    return build


for _arch in ("r3d_18", "mc3_18", "r2plus1d_18"):
    MODELS.register(_arch)(_video_factory(_arch))


class ResNeXtBottleneck3d(nn.Module):
    """1x1x1 reduce -> 3x3x3 grouped conv (``cardinality`` groups) -> 1x1x1 expand (x2), plus shortcut."""

    expansion = 2

    def __init__(self, inplanes: int, planes: int, cardinality: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        mid = cardinality * (planes // 32)
        self.conv1 = nn.Conv3d(inplanes, mid, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(mid)
        self.conv2 = nn.Conv3d(mid, mid, kernel_size=3, stride=stride, padding=1, groups=cardinality, bias=False)
        self.bn2 = nn.BatchNorm3d(mid)
        self.conv3 = nn.Conv3d(mid, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNeXt3d(nn.Module):
    """3D ResNeXt: 7x7x7 stem (temporal stride 1), max-pool, four bottleneck stages, global average pool.

    ``planes`` are the stages' bottleneck widths before expansion (the paper: 128, 256, 512, 1024,
    so 2048-d features); shortcut type B (a strided 1x1x1 conv + BN where the shape changes). The
    original's fixed ``AvgPool3d`` sized for 224 x 224 x 16 is an adaptive global pool here (no
    weights, the same result at that size, and any clip size works).
    """

    def __init__(
        self,
        in_channels: int = 3,
        layers: Sequence[int] = (3, 4, 23, 3),
        cardinality: int = 32,
        stem_width: int = 64,
        planes: Sequence[int] = (128, 256, 512, 1024),
    ) -> None:
        super().__init__()
        if len(layers) != 4 or len(planes) != 4 or min(layers) < 1:
            raise ConfigError(f"resnext3d: layers {list(layers)} and planes {list(planes)} need four positive entries")
        if any(p // 32 < 1 for p in planes):
            raise ConfigError(f"resnext3d: every entry of planes {list(planes)} must be >= 32 (width per group = planes // 32)")
        self.arch = "resnext3d"
        self.takes_clips = True
        self.inplanes = stem_width
        self.conv1 = nn.Conv3d(in_channels, stem_width, kernel_size=7, stride=(1, 2, 2), padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._stage(planes[0], layers[0], cardinality, stride=1)
        self.layer2 = self._stage(planes[1], layers[1], cardinality, stride=2)
        self.layer3 = self._stage(planes[2], layers[2], cardinality, stride=2)
        self.layer4 = self._stage(planes[3], layers[3], cardinality, stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.feature_dim = self.inplanes
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _stage(self, planes: int, blocks: int, cardinality: int, stride: int) -> nn.Sequential:
        out = planes * ResNeXtBottleneck3d.expansion
        downsample = None
        if stride != 1 or self.inplanes != out:
            downsample = nn.Sequential(nn.Conv3d(self.inplanes, out, kernel_size=1, stride=stride, bias=False), nn.BatchNorm3d(out))
        mods = [ResNeXtBottleneck3d(self.inplanes, planes, cardinality, stride, downsample)]
        self.inplanes = out
        mods += [ResNeXtBottleneck3d(out, planes, cardinality) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


@MODELS.register("resnext3d")
def resnext3d(
    in_channels: int = 3,
    layers: Sequence[int] = (3, 4, 23, 3),
    cardinality: int = 32,
    stem_width: int = 64,
    planes: Sequence[int] = (128, 256, 512, 1024),
) -> ResNeXt3d:
    """3D ResNeXt for clips with its depth (layers) and widths as arguments (defaults: ResNeXt-101 32x)."""
    return ResNeXt3d(in_channels, layers, cardinality, stem_width, planes)


@MODELS.register("resnext3d_101")
def resnext3d_101(in_channels: int = 3) -> ResNeXt3d:
    """3D ResNeXt-101, cardinality 32, shortcut B (Hara et al. 2018; CDB's EGTEA model): loads resnext-101-kinetics.pth."""
    net = ResNeXt3d(in_channels)
    net.arch = "resnext3d_101"
    return net
