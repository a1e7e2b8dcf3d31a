"""Catching a stage whose loss explodes, before a diverged model is saved or selected.

A NaN guard alone misses the common failure: a learning rate far too high drives the loss up to a
large but finite value (1e17), the stage "finishes", and an epoch at chance accuracy can be
reported as best. The rule here: a batch loss is *exploded* when it is not finite or above
``train.divergence_factor`` times the stage's reference loss, the larger of

* the loss of the stage's first batch (after a resume, the first batch this process trains), the
  level the stage starts from with its own loss, weights and sampler, and
* ln(number of classes), the cross-entropy of a uniform guess, so that a stage starting from a
  memorised training set (a first loss near 0) does not stop on a harmless rise.

The default factor is 10,000. A re-initialised head trained on large unnormalised features (cRT on a
barely trained backbone, as the recipe smoke tests run it) spikes and recovers: 282 and 107 times its
reference in the ``configs/ham10000/crt.yaml`` and ``configs/cifar10_lt/crt_tau_norm.yaml`` runs of
``tests/test_recipes.py`` (``benchmarks/divergence_spikes.py``), so 100 would stop runs that are fine; a diverged stage (a learning rate of 1e6: 1e17) passes
10,000 within a few batches, long before its epoch ends and its checkpoint would be written.
"""

from __future__ import annotations

import math
from typing import Literal

from ..core.errors import LongtailError
from ..core.ranks import active, sum_over_ranks


class Diverged(LongtailError):
    """The loss exploded and ``train.on_divergence`` is ``stop``."""


class DivergenceGuard:
    """Judges each batch loss of one stage; ``skip`` answers True for a batch to leave out of the update."""

    def __init__(self, stage: str, num_classes: int, factor: float, mode: Literal["stop", "skip"]) -> None:
        self.stage = stage
        self.factor = factor
        self.mode = mode
        self.floor = math.log(max(num_classes, 2))
        self.reference: float | None = None

    def limit(self) -> float | None:
        """The loss above which a batch counts as exploded (None before the first finite batch)."""
        return None if self.reference is None else self.factor * self.reference

    def exploded(self, loss: float) -> bool:
        if self.reference is None and math.isfinite(loss):
            self.reference = max(loss, self.floor)
        limit = self.limit()
        return not math.isfinite(loss) or (limit is not None and loss > limit)

    def skip(self, loss: float, epoch: int, batch: int, kept: str) -> bool:
        """Whether to leave this batch out (``skip``); raises :class:`Diverged` under ``stop``.

        Under data-parallel training with ``skip`` every rank must take the same decision (a rank that
        skips its backward pass would leave the others waiting in the gradient all-reduce), so the verdict
        is shared: one exploded rank counts for all. ``stop`` needs no collective per batch: the rank that
        raises fails the run, and the launcher stops the others, as for any failed rank."""
        bad = self.exploded(loss)
        if self.mode == "skip" and active():
            bad = sum_over_ranks(float(bad))[0] > 0
        if not bad:
            return False
        if self.mode == "skip":
            return True
        raise Diverged(self.message(loss, epoch, batch, kept))

    def message(self, loss: float, epoch: int, batch: int, kept: str) -> str:
        what = f"became {loss}" if not math.isfinite(loss) else (
            f"exploded to {loss:.4g}, above {self.factor:g} x the stage's reference loss {self.reference:.4g}")
        return (f"training loss {what} in stage '{self.stage}', epoch {epoch}, batch {batch}; {kept}. "
                "Lower the learning rate (optimizer.lr or the stage's) or set train.grad_clip, then train again "
                "(--overwrite, or a new name); train.on_divergence=skip leaves such batches out instead")
