"""Data sources, registered in ``longtail.core.registry.DATASETS`` on import."""

from . import arrays, egtea, files, named  # noqa: F401
from .base import Source

__all__ = ["Source"]
