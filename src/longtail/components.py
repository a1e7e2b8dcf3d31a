"""Import every module that registers a component, so registries are complete before use."""

from . import augment, data, losses, methods, models, samplers  # noqa: F401
