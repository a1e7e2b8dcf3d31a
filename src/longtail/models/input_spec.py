"""The input a pretrained backbone expects (mean, std, size), read from the model's own config.

A pretrained network was trained on images normalised one way at one size; typing those numbers
into recipes invites mismatches (the TF-ported EfficientNet-Lite weights expect mean = std = 0.5,
torchvision's ResNets ImageNet's statistics). ``data.normalize: model`` and
``data.image_size: model`` take them from timm's ``pretrained_cfg`` or torchvision's weight
transforms instead; :func:`data_for_model` resolves both before the data is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core.errors import ConfigError

if TYPE_CHECKING:
    from ..core.schema import DataConfig, ModelConfig


@dataclass(frozen=True)
class InputSpec:
    """Mean/std in [0, 1] units (RGB), input (height, width), and where they were read."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: tuple[int, int]
    source: str


def input_spec(cfg: "ModelConfig") -> InputSpec:
    """The pretrained input config of the backbone ``cfg`` builds (timm, torchvision, packaged)."""
    arch = cfg.kwargs.get("arch")
    if isinstance(cfg.pretrained, str):
        from .packaged import get_source

        source = get_source(cfg.pretrained)
        source.check_model(cfg.name, cfg.kwargs)
        return _timm_spec(source.arch)
    if cfg.name == "timm" and isinstance(arch, str):
        return _timm_spec(arch)
    if cfg.name == "torchvision" and isinstance(arch, str):
        return _torchvision_spec(arch)
    raise ConfigError(
        f"data.normalize/data.image_size 'model': model '{cfg.name}' has no pretrained input config; "
        "use model.name=timm or torchvision with an arch (or model.pretrained=efficientnet_lite0), "
        "or set data.normalize=dataset and a number for data.image_size"
    )


def data_for_model(data: "DataConfig", model: "ModelConfig") -> tuple["DataConfig", InputSpec | None]:
    """``data`` with ``image_size: model`` replaced by the backbone's size, and the spec when either option asks for it."""
    if data.normalize != "model" and data.image_size != "model":
        return data, None
    spec = input_spec(model)
    if data.image_size == "model":
        data = data.model_copy(update={"image_size": spec.input_size})
    return data, spec


def _timm_spec(arch: str) -> InputSpec:
    import timm

    cfg = timm.get_pretrained_cfg(arch) if timm.is_model(arch) else None
    if cfg is None:
        raise ConfigError(f"data.normalize/data.image_size 'model': timm '{arch}' has no pretrained config; set them by hand")
    _, h, w = cfg.input_size
    return InputSpec(tuple(cfg.mean), tuple(cfg.std), (int(h), int(w)), f"timm '{arch}' pretrained_cfg")


def _torchvision_spec(arch: str) -> InputSpec:
    import torchvision.models as tvm

    try:
        transforms = tvm.get_model_weights(arch).DEFAULT.transforms()  # type: ignore[attr-defined]
    except (ValueError, AttributeError, KeyError):
        raise ConfigError(f"data.normalize/data.image_size 'model': torchvision '{arch}' has no pretrained weights; set them by hand") from None
    size = int(transforms.crop_size[0])
    return InputSpec(tuple(transforms.mean), tuple(transforms.std), (size, size), f"torchvision '{arch}' default weights transforms")
