"""The largest batch loss of each stage over its divergence reference, in the recipe smoke runs of tests/test_recipes.py.

    python benchmarks/divergence_spikes.py configs/ham10000/crt.yaml configs/cifar10_lt/crt_tau_norm.yaml

Each recipe trains with the tests' tiny overrides (3 images per class, 1 epoch per stage) and the guard
switched off (train.divergence_factor=1e12); the printed ratio is max(batch loss / reference) per stage,
what train.divergence_factor must stay above for such runs to finish (engine/divergence.py).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import longtail
from longtail.core.config import load_raw
from longtail.engine import divergence

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_recipes import tiny_overrides  # noqa: E402  (the smoke tests' own overrides)


def main() -> None:
    peaks: dict[str, float] = {}
    judged = divergence.DivergenceGuard.exploded

    def recording(self: divergence.DivergenceGuard, loss: float) -> bool:
        verdict = judged(self, loss)
        peaks[self.stage] = max(peaks.get(self.stage, 0.0), loss / self.reference)
        return verdict

    divergence.DivergenceGuard.exploded = recording  # type: ignore[method-assign]
    for recipe in sys.argv[1:]:
        peaks.clear()
        with tempfile.TemporaryDirectory() as tmp:
            longtail.train(recipe, tiny_overrides(load_raw(recipe), Path(tmp)) + ["train.divergence_factor=1e12"])
        print(recipe, {stage: round(ratio, 1) for stage, ratio in peaks.items()})


if __name__ == "__main__":
    main()
