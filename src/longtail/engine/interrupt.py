"""SIGTERM / SIGINT during training: stop at a safe point instead of dying mid-write.

A cluster preempts a job with SIGTERM, a person with Ctrl-C (SIGINT). Inside :func:`stop_on_signals`
the first such signal only sets a flag; the training loop calls :func:`check` between batches and
between epochs, so a checkpoint write in progress always completes; stopped inside an epoch, the
engine first saves ``checkpoints/last.pt`` with the batches finished so far (``--resume`` trains the
rest exactly).
A second signal stops at once (the default behaviour).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from ..core.errors import LongtailError

_requested: int | None = None


class Interrupted(LongtailError):
    """Training stopped on SIGTERM/SIGINT at a safe point; ``signum`` says which."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


def _handler(signum: int, frame: FrameType | None) -> None:
    global _requested
    if _requested is not None:  # a second signal: stop now
        signal.signal(signum, signal.SIG_DFL)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        signal.raise_signal(signum)
        return
    _requested = signum


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into a stop request for the duration of the block (main thread only)."""
    global _requested
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _requested = None
    previous = {s: signal.signal(s, _handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _requested = None


def requested() -> int | None:
    """The signal number of a pending stop request, or None."""
    return _requested


def check() -> None:
    """Raise :class:`Interrupted` when a stop was requested (call at safe points only)."""
    if _requested is not None:
        name = signal.Signals(_requested).name
        raise Interrupted(f"stopped by {name}", _requested)
