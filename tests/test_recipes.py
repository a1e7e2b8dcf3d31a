"""Every recipe in configs/ runs: one short epoch per stage on a few images per class.

The recipes read the real data in ../shared/data (CIFAR JPEG copies, HAM10000); they are skipped
with a reason when that folder is absent. The first run decodes each dataset into the tensor cache.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import longtail
from longtail.config import load_raw

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p.relative_to(ROOT) for p in (ROOT / "configs").rglob("*.yaml"))


def tiny_overrides(raw: dict, tmp_path: Path) -> list[str]:
    overrides = [
        f"output_dir={tmp_path}", "train.epochs=1", "train.progress=false", "train.tensorboard=false",
        "data.max_per_class=3", "data.batch_size=8", "data.eval_batch_size=64",
    ]
    overrides += [f"stages.{i}.epochs=1" for i in range(len(raw.get("stages") or []))]
    return overrides


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES, ids=[str(r) for r in RECIPES])
def test_recipe_runs_one_short_epoch(recipe, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    raw = load_raw(recipe)
    source_path = raw["data"]["source"].get("path")
    if source_path and not Path(source_path).exists():
        pytest.skip(f"{source_path} is not available")
    result = longtail.train(str(recipe), tiny_overrides(raw, tmp_path))
    assert result.finished
    res = result.results
    split = "test" if "test" in res else "val"
    assert 0.0 <= res[split]["balanced_accuracy"] <= 1.0
    assert res["epochs"] == max(1, len(raw.get("stages") or []))
