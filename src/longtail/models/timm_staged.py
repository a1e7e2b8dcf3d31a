"""A timm ResNet or RegNet seen stage by stage (:class:`~longtail.models.staged.StagedBackbone`).

The plain ``timm`` backbone runs timm's own forward, which cannot be split; BBN needs the stem and
stages separately, to share all but the last stage between its two branches. Only the two families
MBIT's BBN supports are accepted (timm ``ResNet`` and ``RegNet``); parameter names stay timm's.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..core.errors import ConfigError
from .staged import StagedBackbone
from .timm_backbone import create_timm_model

#: timm class name -> the attribute names of its stages, in order
STAGE_NAMES = {"ResNet": ("layer1", "layer2", "layer3", "layer4"), "RegNet": ("s1", "s2", "s3", "s4")}


class TimmStagedBackbone(StagedBackbone):
    """A timm ResNet/RegNet (``num_classes=0``) as stem -> stages -> global average pooling."""

    def __init__(self, arch: str, in_channels: int = 3, pretrained: bool = False, **kwargs: Any) -> None:
        super().__init__()
        net = create_timm_model(arch, in_channels, pretrained, **kwargs)
        family = type(net).__name__
        if family not in STAGE_NAMES or not isinstance(getattr(net, "final_conv", nn.Identity()), nn.Identity):
            raise ConfigError(f"model.arch: timm '{arch}' is a {family}; this model needs a timm ResNet or RegNet (e.g. resnet18, regnety_008)")
        self.net = net
        self.family = family
        self.arch = f"timm:{arch}"
        self.stage_names = list(STAGE_NAMES[family])
        self.feature_dim = int(net.num_features)

    def forward_stem(self, x: Tensor) -> Tensor:
        net: Any = self.net
        if self.family == "ResNet":
            return net.maxpool(net.act1(net.bn1(net.conv1(x))))
        return net.stem(x)

    def stages(self) -> list[nn.Module]:
        return [getattr(self.net, name) for name in self.stage_names]

    def pop_last_stage(self) -> nn.Module:
        """Remove the last stage from the network and return it (BBN moves it into two branches)."""
        name = self.stage_names.pop()
        stage = getattr(self.net, name)
        setattr(self.net, name, nn.Identity())
        return stage
