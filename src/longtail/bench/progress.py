"""Per-epoch progress lines of a benchmark grid: the run, its epoch, the validation score, elapsed time
and an ETA for the run and for the whole grid.

The ETA is the mean wall time of the epochs finished so far in this invocation (data loading,
training and validation included) times the epochs still to run; before the first epoch it is
"ETA unknown". Cells that were already finished are not counted; a resumed cell counts only its
missing epochs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Cell:
    label: str  # e.g. "ce/seed 0"
    total: int  # epochs the cell trains in all
    done: int = 0  # epochs finished (before this invocation, then counted up)


def duration(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss`` (whole seconds)."""
    s = max(int(round(seconds)), 0)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class GridProgress:
    """Prints one line when a cell starts and one per finished epoch; use as an engine epoch listener."""

    def __init__(self, cells: list[Cell], clock: Callable[[], float] = time.monotonic, out: Callable[[str], Any] | None = None) -> None:
        self.cells = cells
        self.clock = clock
        self.out = out or (lambda line: print(line, flush=True))
        self.start = clock()
        self.current: int | None = None
        self.cell_start = self.start
        self.epoch_start = self.start
        self.epochs_timed = 0
        self.seconds_timed = 0.0

    @property
    def seconds_per_epoch(self) -> float | None:
        return self.seconds_timed / self.epochs_timed if self.epochs_timed else None

    def remaining_epochs(self) -> int:
        return sum(max(c.total - c.done, 0) for c in self.cells)

    def eta(self, epochs: int) -> str:
        rate = self.seconds_per_epoch
        return "unknown" if rate is None else duration(rate * epochs)

    def start_cell(self, index: int) -> None:
        self.current = index
        self.cell_start = self.epoch_start = self.clock()
        cell = self.cells[index]
        left = cell.total - cell.done
        what = f"resuming at epoch {cell.done}/{cell.total}" if cell.done else f"{cell.total} epochs"
        eta = "ETA unknown" if self.seconds_per_epoch is None else f"ETA run {self.eta(left)}, grid {self.eta(self.remaining_epochs())}"
        self.out(f"[{index + 1}/{len(self.cells)}] {cell.label}: running ({what}); {eta}")

    def __call__(self, report: Any) -> None:
        """An :class:`longtail.engine.hooks.EpochReport` arrived: one line for the current cell."""
        if self.current is None:
            return
        now = self.clock()
        self.seconds_timed += now - self.epoch_start
        self.epochs_timed += 1
        self.epoch_start = now
        cell = self.cells[self.current]
        cell.done = min(cell.done + 1, cell.total)
        score = "not validated" if report.val_score is None else f"{report.metric} {report.val_score:.4f}"
        self.out(
            f"[{self.current + 1}/{len(self.cells)}] {cell.label}: epoch {cell.done}/{cell.total} ({report.stage})  val {score}  "
            f"elapsed {duration(now - self.cell_start)} (grid {duration(now - self.start)})  "
            f"ETA run {self.eta(cell.total - cell.done)}, grid {self.eta(self.remaining_epochs())}"
        )

    def finish_cell(self) -> None:
        if self.current is not None:
            cell = self.cells[self.current]
            cell.done = cell.total  # a cell that trained fewer epochs (early stop) leaves nothing to wait for
            self.out(f"[{self.current + 1}/{len(self.cells)}] {cell.label}: finished in {duration(self.clock() - self.cell_start)}")
        self.current = None
