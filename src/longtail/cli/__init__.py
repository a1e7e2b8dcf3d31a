"""The `longtail` command line (:func:`main`), a thin layer over :mod:`longtail.api`."""

from .commands import main

__all__ = ["main"]
