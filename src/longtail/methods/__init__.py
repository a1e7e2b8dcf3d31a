"""Training strategies that need more than a loss (train steps such as BBN)."""

from . import steps  # noqa: F401
