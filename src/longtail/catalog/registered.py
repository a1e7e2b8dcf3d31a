"""Import every module that registers a component, so registries are complete before use."""

from .. import augment, data, losses, models  # noqa: F401
from ..data import samplers  # noqa: F401
from ..engine import steps  # noqa: F401
