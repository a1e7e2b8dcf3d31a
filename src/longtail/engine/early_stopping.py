"""Early stopping on the validation selection metric: stop once it has not improved for ``patience`` epochs.

The rule is a small state machine kept apart from the engine so that it can be checked on a
hand-made score sequence and saved in the checkpointed progress (a resumed run keeps counting
where it stopped). HMLoss's ISIC 2019 trainer stops after 15 epochs without a better validation
balanced accuracy (its ``--delay``); here a score improves only when it beats the best by more than
``min_delta`` (HMLoss also resets its counter on a tie).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class EarlyStopping:
    """Counts epochs since the last improvement of the validation score."""

    patience: int
    min_delta: float = 0.0
    best: float = -math.inf
    epochs_without_improvement: int = 0
    last_epoch: int = 0  # global epoch of the last validation seen (epochs between validations count)

    def update(self, score: float, epoch: int) -> bool:
        """Record the validation ``score`` of global epoch ``epoch``; True when training should stop."""
        elapsed = max(1, epoch - self.last_epoch)
        self.last_epoch = epoch
        if score > self.best + self.min_delta:
            self.best = score
            self.epochs_without_improvement = 0
            return False
        self.epochs_without_improvement += elapsed
        return self.epochs_without_improvement >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "EarlyStopping":
        return cls(**state)
