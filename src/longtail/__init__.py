"""longtail: train and evaluate image classifiers on class-imbalanced (long-tailed) data.

The top-level functions are the Python API (see :mod:`longtail.api`); importing the package stays
cheap because they load lazily.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["train", "evaluate", "predict", "export", "load_config"]


def __getattr__(name: str) -> Any:
    if name in ("train", "evaluate", "predict", "export"):
        from . import api

        return getattr(api, name)
    if name == "load_config":
        from .catalog.check import load_config

        return load_config
    raise AttributeError(f"module 'longtail' has no attribute '{name}'")
