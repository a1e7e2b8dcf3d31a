"""longtail: train and evaluate image classifiers on class-imbalanced (long-tailed) data.

The top-level functions are the Python API (see :mod:`longtail.api`); importing the package stays
cheap because they load lazily, and so do the component packages a script reaches by attribute
(``import longtail; longtail.losses.create(...)``, ``longtail.metrics.compute(...)``).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["train", "evaluate", "predict", "export", "load_config"]

#: packages reachable as attributes of ``longtail`` without importing them first
LAZY_PACKAGES = ("augment", "data", "losses", "metrics", "models")


def __getattr__(name: str) -> Any:
    if name in ("train", "evaluate", "predict", "export"):
        from . import api

        return getattr(api, name)
    if name == "load_config":
        from .catalog.check import load_config

        return load_config
    if name in LAZY_PACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'longtail' has no attribute '{name}'")
