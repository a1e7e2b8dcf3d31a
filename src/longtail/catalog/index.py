"""A light index of the registered components, so `longtail list` answers without importing torch.

``components.json`` (beside this module) holds every registry's ``describe()``; a test checks it
against the live registries, and ``python -m longtail.catalog.index`` rewrites it after adding a component.
"""

from __future__ import annotations

import json
from pathlib import Path

PATH = Path(__file__).with_name("components.json")


def build() -> dict[str, dict[str, str]]:
    """kind -> name -> one-line description, from the registries (imports every component: slow)."""
    from ..core.registry import ALL
    from . import registered as components  # noqa: F401

    return {kind: ALL[kind].describe() for kind in sorted(ALL)}


def load() -> dict[str, dict[str, str]]:
    """The stored index (no torch import)."""
    return json.loads(PATH.read_text())


def write() -> Path:
    PATH.write_text(json.dumps(build(), indent=1, sort_keys=True) + "\n")
    return PATH


if __name__ == "__main__":
    print(f"wrote {write()}")
