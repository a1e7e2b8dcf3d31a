"""User-facing errors.

Every problem a user can fix (a config typo, a missing file, a bad label) is raised as a
:class:`LongtailError` whose message is one line naming the problem and the fix. The CLI prints
it without a traceback; library callers can catch it like any exception.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class LongtailError(Exception):
    """A problem in the user's input, with a one-line message that says how to fix it."""


class ConfigError(LongtailError):
    """The config (file or overrides) is invalid."""


class DataError(LongtailError):
    """The data on disk does not match what the config describes."""


def closest(name: str, valid: Iterable[str]) -> str | None:
    """The valid name most similar to ``name`` (for 'did you mean' hints), or None."""
    matches = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1, cutoff=0.5)
    return matches[0] if matches else None


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """A ' (did you mean 'x'?)' suffix, or an empty string when nothing is close."""
    match = closest(name, valid)
    return f" (did you mean '{match}'?)" if match else ""
