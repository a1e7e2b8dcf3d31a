"""Any torchvision classification model as a backbone (``model: {name: torchvision, arch: regnet_y_800mf}``).

The model keeps torchvision's own module tree under ``net`` and only swaps two modules: its
final ``nn.Linear`` becomes the identity, so it returns pooled features, and its first
convolution is rebuilt when the data has other than 3 channels. So torchvision's weight files
load as they are. ResNets and RegNets also run stage by stage, which is where DropBlock goes
(MBIT's ``RegNetY_*_DropBlock``).
"""

from __future__ import annotations

from typing import Any

import torchvision.models as tvm
from torch import Tensor, nn

from ..core.errors import ConfigError, LongtailError, did_you_mean
from ..core.registry import MODELS
from .staged import StagedBackbone
from .weights import load_backbone_weights, one_line


class TorchvisionBackbone(StagedBackbone):
    """A torchvision classifier without its last linear layer; features N x ``feature_dim``."""

    def __init__(self, arch: str, in_channels: int = 3, pretrained: bool = False, **kwargs: Any) -> None:
        super().__init__()
        valid = tvm.list_models(module=tvm)
        if arch not in valid:
            raise ConfigError(f"model.arch: '{arch}' is not a torchvision classification model{did_you_mean(arch, valid)}")
        try:
            net = tvm.get_model(arch, weights=None, **kwargs)
        except TypeError as e:
            raise ConfigError(f"model: torchvision '{arch}' rejected an argument ({one_line(e)})") from None
        self.arch = f"torchvision:{arch}"
        head_name, head = _last_linear(net, arch)
        _replace(net, head_name, nn.Identity())
        self.feature_dim = head.in_features
        self.classifier_prefixes = (f"net.{head_name}.",)
        conv_name, conv = _first_conv(net, arch)
        if conv.in_channels != in_channels:
            _replace(net, conv_name, _conv_like(conv, in_channels))
        self.net = net
        self.family = "resnet" if isinstance(net, tvm.ResNet) else "regnet" if isinstance(net, tvm.RegNet) else None
        if pretrained:
            load_backbone_weights(self, fetch_imagenet_weights(arch), f"torchvision '{arch}' ImageNet weights")

    def add_drop_blocks(self, prob: float, block_size: int = 5, steps: int = 0, count: int = 2) -> None:
        if prob > 0 and self.family is None:
            raise ConfigError(
                f"model: DropBlock needs a ResNet or RegNet, not torchvision '{self.arch.split(':', 1)[1]}'; "
                "remove drop_block_prob or pick e.g. arch: regnet_y_800mf"
            )
        super().add_drop_blocks(prob, block_size, steps, count)

    def forward_stem(self, x: Tensor) -> Tensor:
        net: Any = self.net
        if self.family == "resnet":
            return net.maxpool(net.relu(net.bn1(net.conv1(x))))
        return net.stem(x)

    def stages(self) -> list[nn.Module]:
        net: Any = self.net
        if self.family == "resnet":
            return [m for m in (net.layer1, net.layer2, net.layer3, net.layer4) if not isinstance(m, nn.Identity)]
        return list(net.trunk_output.children())

    def pop_last_stage(self) -> nn.Module:
        """Remove the last stage from the network and return it (BBN moves it into two branches)."""
        net: Any = self.net
        if self.family is None:
            raise ConfigError(f"model: BBN needs a ResNet or RegNet, not torchvision '{self.arch.split(':', 1)[1]}'")
        stage = self.stages()[-1]
        if self.family == "resnet":
            name = next(n for n in ("layer4", "layer3", "layer2", "layer1") if getattr(net, n) is stage)
            setattr(net, name, nn.Identity())
        else:
            del net.trunk_output[len(net.trunk_output) - 1]
        return stage

    def forward(self, x: Tensor) -> Tensor:
        if self.family is None:
            return self.net(x)
        return super().forward(x)


def fetch_imagenet_weights(arch: str) -> dict[str, Tensor]:
    """Download (or read from the torch hub cache) torchvision's default weights for ``arch``."""
    try:
        weights = tvm.get_model_weights(arch).DEFAULT  # type: ignore[attr-defined]
    except (ValueError, AttributeError, KeyError):
        raise LongtailError(
            f"torchvision '{arch}' has no pretrained weights; set model.pretrained=false or pass model.weights=/path/to/file"
        ) from None
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except Exception as e:  # noqa: BLE001 - offline, proxy, disk, corrupt cache: all mean "no weights"
        raise LongtailError(
            f"could not get the ImageNet weights of torchvision '{arch}' ({one_line(e)}); when offline, "
            f"download {weights.url} elsewhere and pass model.weights=/path/to/file"
        ) from None


def _last_linear(net: nn.Module, arch: str) -> tuple[str, nn.Linear]:
    found = [(name, m) for name, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ConfigError(f"model.arch: torchvision '{arch}' has no linear classifier to remove; pick another arch")
    return found[-1]  # type: ignore[return-value]


def _first_conv(net: nn.Module, arch: str) -> tuple[str, nn.Conv2d]:
    for name, m in net.named_modules():
        if isinstance(m, nn.Conv2d):
            return name, m
    raise ConfigError(f"model.arch: torchvision '{arch}' has no 2D convolution to take the image; pick another arch")


def _conv_like(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    if conv.groups != 1:
        raise ConfigError("model: the first convolution is grouped; use 3-channel images (data.channels=3)")
    return nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


@MODELS.register("torchvision")
def torchvision_backbone(
    in_channels: int = 3,
    arch: str = "resnet18",
    pretrained: bool = False,
    drop_block_prob: float = 0.0,
    drop_block_size: int = 5,
    drop_block_steps: int = 0,
    **kwargs: Any,
) -> TorchvisionBackbone:
    """Any torchvision classification model by name (arch: resnet18, regnet_y_800mf, efficientnet_b0, ...)."""
    net = TorchvisionBackbone(arch, in_channels, pretrained, **kwargs)
    net.add_drop_blocks(drop_block_prob, drop_block_size, drop_block_steps)
    return net
