"""How a message names an option: as the CLI flag when the `longtail` command runs, as the Python
keyword when a notebook or script calls :mod:`longtail.api` (advice to pass ``--overwrite`` is no
help inside Python)."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

_CLI: contextvars.ContextVar[bool] = contextvars.ContextVar("longtail_cli", default=False)

#: option -> (CLI form, Python form); ``{}`` is the option's value
_FORMS = {
    "overwrite": ("--overwrite", "overwrite=True"),
    "resume": ("--resume {}", "resume='{}'"),
    "resume_command": ("`longtail train --resume {}`", "`longtail.train(resume='{}')`"),
}


@contextlib.contextmanager
def cli() -> Iterator[None]:
    """Messages raised inside name CLI flags (the CLI wraps every command in this)."""
    token = _CLI.set(True)
    try:
        yield
    finally:
        _CLI.reset(token)


def option(name: str, value: object = "RUN_DIR") -> str:
    """``option("overwrite")`` -> ``--overwrite`` under :func:`cli`, ``overwrite=True`` otherwise."""
    form = _FORMS[name][0 if _CLI.get() else 1]
    return form.format(value)
