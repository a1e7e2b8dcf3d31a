"""stages[].image_size (progressive resizing): a stage trains on its batches resized after the train pipeline;
validation, test and the other stages keep data.image_size."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import longtail
from longtail.core.errors import ConfigError
from longtail.core.schema import StageConfig
from longtail.engine import trainer as trainer_module
from longtail.engine.batches import stage_size

from ..helpers import tiny_config


def test_stage_size_is_the_antialiased_bilinear_resize():
    x = torch.rand(3, 2, 12, 12)
    out = stage_size(x, 7)
    assert out.shape == (3, 2, 7, 7)
    assert torch.equal(out, F.interpolate(x, size=(7, 7), mode="bilinear", antialias=True, align_corners=False))
    assert stage_size(x, None) is x and stage_size(x, 12) is x
    with pytest.raises(ConfigError, match="clip run keeps data.image_size"):
        stage_size(torch.rand(1, 3, 4, 12, 12), 6)
    with pytest.raises(ValueError):
        StageConfig(epochs=1, image_size=0)


def test_each_stage_trains_at_its_own_size_and_evaluation_at_the_data_size(tmp_path, monkeypatch):
    seen: list[tuple[int, int | None]] = []

    def recording(x, size):
        out = stage_size(x, size)
        seen.append((out.shape[-1], size))
        return out

    monkeypatch.setattr(trainer_module, "stage_size", recording)
    cfg = tiny_config(tmp_path, name="progressive", stages=[{"name": "small", "epochs": 1, "image_size": 6}, {"name": "full", "epochs": 1}])
    result = longtail.train(cfg)
    assert result.finished
    sizes = [side for side, _ in seen]
    assert sizes and sizes[0] == 6 and sizes[-1] == 8 and sorted(set(sizes)) == [6, 8]
    assert sizes == sorted(sizes)  # every small batch before every full one
    assert 0.0 <= result.results["test"]["balanced_accuracy"] <= 1.0
