"""Wall time of a run over every process that worked on it.

A stopped run resumes in a new process, so the process's own clock undercounts what the run cost.
Each checkpoint carries the run's seconds so far (``Progress.elapsed_seconds``, and an SPBL pace's
record); a resumed process starts its clock from there. Time after the last checkpoint of a killed
process is not counted: that work is lost and done again, and the redo is counted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class RunClock:
    """Seconds of earlier processes (up to their last checkpoint) plus this process's since ``started``."""

    earlier: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def seconds(self) -> float:
        return self.earlier + (time.perf_counter() - self.started)

    def carry(self, earlier: float) -> None:
        """Resume from a checkpoint that recorded ``earlier`` seconds of the run."""
        self.earlier = float(earlier)
