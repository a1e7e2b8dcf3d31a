"""A recipe checked against the registries: what the schema cannot know without the components.

The schema (:mod:`longtail.core.schema`) imports no component, so that it can be read, and a
config validated, without torch. This layer sits above every component package: it imports them
all (:mod:`.registered`) and checks each ``{name, **kwargs}`` entry against its registry (unknown
name, unknown or mistyped kwarg, with a did-you-mean), the packaged weight name, and renames the
deprecated data-source keys. :func:`load_config` is the loader the API, the CLI and ``bench`` use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.config import read_config
from ..core.errors import ConfigError, did_you_mean
from ..core.registry import DATASETS, LOSSES, METHODS, MODELS, PRETRAINED, SAMPLERS, TRANSFORMS, WEIGHTS, warn_deprecated
from ..core.schema import Component, Config
from . import registered  # noqa: F401  (imports every module that registers a component)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, raw: dict[str, Any] | None = None) -> Config:
    """Load, override, validate and check component kwargs. ``raw`` replaces the file (API use)."""
    cfg = read_config(path, overrides, raw)
    source = str(path) if path is not None else "<dict>"
    check_pretrained(cfg, source)
    rename_deprecated(cfg, source)
    check_components(cfg, source)
    return cfg


def check_pretrained(cfg: Config, source: str = "<dict>") -> None:
    """``model.pretrained: <name>`` must name a registered packaged weight source (``longtail list pretrained``)."""
    value = cfg.model.pretrained
    if isinstance(value, str) and value not in PRETRAINED:
        names = PRETRAINED.names()
        raise ConfigError(f"{source}: bad value for 'model.pretrained' ({value!r}): Value error, '{value}' is not a packaged weight source"
                          f"{did_you_mean(value, names)}; use true, false or one of: {', '.join(names)}")


def rename_deprecated(cfg: Config, source: str = "<dict>") -> None:
    """Move deprecated data-source keys (``path``, ``file``, ``image_root``) to ``root``, warning once per key."""
    if cfg.data.source.name not in DATASETS:
        return  # check_components names the unknown source
    kwargs, messages = DATASETS.rename_deprecated(cfg.data.source.name, cfg.data.source.kwargs, where="data.source")
    if messages:
        warn_deprecated(f"{source}: {m}" for m in messages)
        cfg.data.source = Component(name=cfg.data.source.name, **kwargs)


def check_components(cfg: Config, source: str = "<dict>") -> None:
    """Check every ``{name, **kwargs}`` entry against its registry (unknown name, bad kwarg)."""

    def check(registry: Any, comp: Component | None, where: str) -> None:
        if comp is None:
            return
        try:
            registry.get(comp.name)
            registry.check_kwargs(comp.name, list(comp.kwargs), where=where)
            registry.check_types(comp.name, dict(comp.kwargs), where=where)
        except ConfigError as e:
            raise ConfigError(f"{source}: {where}.name: {e}" if str(e).startswith("unknown") else f"{source}: {e}") from None

    check(DATASETS, cfg.data.source, "data.source")
    for i, t in enumerate(cfg.data.preprocess):
        check(TRANSFORMS, t, f"data.preprocess.{i}")
    for i, t in enumerate(cfg.data.train_transforms):
        check(TRANSFORMS, t, f"data.train_transforms.{i}")
    for i, t in enumerate(cfg.data.eval_transforms):
        check(TRANSFORMS, t, f"data.eval_transforms.{i}")
    check(MODELS, Component(name=cfg.model.name, **cfg.model.kwargs), "model")
    check(METHODS, cfg.method, "method")
    if cfg.eval.tta is not None:
        check(METHODS, cfg.eval.tta, "eval.tta")
    for stage in cfg.resolved_stages():
        prefix = f"stages.{stage.index}" if cfg.stages else ""
        sep = "." if prefix else ""
        check(LOSSES, stage.loss, f"{prefix}{sep}loss")
        check(WEIGHTS, stage.class_weights, f"{prefix}{sep}class_weights")
        check(SAMPLERS, stage.sampler, f"{prefix}{sep}sampler")
        if stage.mixing is not None:
            check(METHODS, stage.mixing, f"{prefix}{sep}mixing")
