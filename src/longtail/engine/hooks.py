"""Epoch listeners: code outside a run (``longtail bench``, ``longtail.train(on_epoch=...)``) hears every finished epoch."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


# ------------------------------------------------------------------------------ epoch listeners
@dataclass(frozen=True)
class EpochReport:
    """What a listener hears after each finished epoch (the metrics.jsonl record is in ``record``)."""

    epoch: int  # finished epochs of this engine run, over all stages
    total: int  # epochs of this engine run
    stage: str
    metric: str  # train.select_metric
    val_score: float | None  # validation ``metric`` of this epoch; None when it was not validated
    record: dict[str, Any]


_LISTENERS: list[Callable[[EpochReport], None]] = []


@contextlib.contextmanager
def epoch_listener(callback: Callable[[EpochReport], None]) -> Iterator[None]:
    """Call ``callback`` after every epoch any Trainer finishes inside the block (SPBL paces included).

    How `longtail bench` prints per-epoch progress and ``longtail.train(on_epoch=...)`` reports to a
    notebook, without the loop knowing who listens.
    """
    _LISTENERS.append(callback)
    try:
        yield
    finally:
        _LISTENERS.remove(callback)


def listening() -> bool:
    """Whether any listener is registered (the Trainer builds a report only then)."""
    return bool(_LISTENERS)


def announce(report: EpochReport) -> None:
    """Tell every registered listener about a finished epoch."""
    for listener in list(_LISTENERS):
        listener(report)
