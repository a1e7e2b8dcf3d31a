"""Import every module that registers a component, so registries are complete before use."""

from . import data, losses, methods, models  # noqa: F401
