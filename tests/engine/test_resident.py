"""``data.device_resident``: the training split on the device, batches sliced and augmented there.

On CPU the "device" is the CPU, so what is checked here is the path itself: the batched random crop
(zero padding, then the drawn offsets) and flip against a hand computation, the same batches for a
seed, the same run as the default path bit for bit, and the one-line refusals. That the images land
in GPU memory is what benchmarks/gpu_protocol.py exercises on a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import longtail
import longtail.augment  # noqa: F401  registers randaugment, a per-sample transform
from longtail import rundir
from longtail.core.errors import ConfigError
from longtail.core.schema import Component
from longtail.data import build_pipeline
from longtail.data.dataset import FileImageDataset, TensorImageDataset
from longtail.engine.batches import batches
from longtail.engine.resident import resident_split

from ..helpers import tiny_config

CROP_FLIP = [Component(name="random_crop", size=4, padding=1), Component(name="hflip", p=0.5)]


def _split(n: int = 5) -> TensorImageDataset:
    images = torch.arange(n * 2 * 4 * 4, dtype=torch.int64).remainder(251).to(torch.uint8).view(n, 2, 4, 4)
    return TensorImageDataset(images, np.arange(n) % 2, ["a", "b"])


def _pipeline(transforms: list[Component] = CROP_FLIP):  # mean 0, std 1: the output is the augmented image / 255
    return build_pipeline(transforms, [0.0, 0.0], [1.0, 1.0], train=True)


def _resident_batch(split: TensorImageDataset, order: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    pipeline = _pipeline()
    resident = resident_split(split, pipeline, torch.device("cpu"), num_workers=0)
    x, y, _ = next(batches(resident, order, batch_size=len(order), num_workers=0, seed=0))
    torch.manual_seed(seed)
    return pipeline.batch(x), y


def test_crop_and_flip_of_a_resident_batch_match_a_hand_computation():
    split, order, seed = _split(), [3, 0, 4, 1], 11
    out, y = _resident_batch(split, order, seed)
    # the draws, in the order the ops make them: crop top, crop left (one float64 uniform each, per image), then flip
    torch.manual_seed(seed)
    n = len(order)
    top = (torch.rand(n, dtype=torch.float64) * 3).floor().long()  # 4 + 2 * padding - 4 + 1 = 3 offsets
    left = (torch.rand(n, dtype=torch.float64) * 3).floor().long()
    flip = torch.rand(n) < 0.5
    for i, item in enumerate(order):
        padded = torch.zeros(2, 6, 6)
        padded[:, 1:5, 1:5] = split.images[item].float() / 255
        expected = padded[:, top[i] : top[i] + 4, left[i] : left[i] + 4]
        if flip[i]:
            expected = expected.flip(-1)
        assert torch.equal(out[i], expected), f"image {i}"
    assert y.tolist() == [order_i % 2 for order_i in order]
    assert flip.any() and not flip.all() and len(set(top.tolist())) > 1  # the seed exercises both flip branches and several offsets


def test_resident_batches_are_deterministic_for_a_seed():
    split, order = _split(), [0, 1, 2, 3, 4]
    a, _ = _resident_batch(split, order, seed=3)
    b, _ = _resident_batch(split, order, seed=3)
    c, _ = _resident_batch(split, order, seed=4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_a_resident_split_is_a_copy_of_the_split_rows_only():
    store = _split(6)
    sub = store.subset([4, 1, 2])
    resident = resident_split(sub, _pipeline(), torch.device("cpu"), num_workers=0)
    assert len(resident.images) == 3 and torch.equal(resident.images, store.images[[4, 1, 2]])
    assert resident.targets.tolist() == sub.targets.tolist() and resident.ids == sub.ids


def test_refusals_are_one_line_errors_naming_the_fix(tmp_path):
    split = _split()
    with pytest.raises(ConfigError, match="set data.num_workers=0"):
        resident_split(split, _pipeline(), torch.device("cpu"), num_workers=2)
    per_sample = [Component(name="randaugment"), *CROP_FLIP]
    with pytest.raises(ConfigError, match=r"per-sample transforms \(randaugment\) run per image on the CPU"):
        resident_split(split, _pipeline(per_sample), torch.device("cpu"), num_workers=0, transforms=per_sample)
    streamed = FileImageDataset([str(tmp_path / "a.png")], [0], ["a"], decoder=lambda p: torch.zeros(1, 4, 4, dtype=torch.uint8))
    with pytest.raises(ConfigError, match="'stream'; set data.cache=true"):
        resident_split(streamed, _pipeline(), torch.device("cpu"), num_workers=0)


def _train(tmp_path, name: str, resident: bool):
    cfg = tiny_config(tmp_path, name=name, data={"device_resident": resident, "train_transforms": [
        {"name": "random_crop", "size": 8, "padding": 1}, {"name": "hflip", "p": 0.5}]})
    result = longtail.train(cfg)
    return result.run_dir, rundir.read_jsonl(result.run_dir / rundir.METRICS)


def test_a_device_resident_run_trains_and_equals_the_default_path(tmp_path):
    resident_dir, resident = _train(tmp_path, "resident", True)
    default_dir, default = _train(tmp_path, "default", False)
    assert [r["train_loss"] for r in resident] == [r["train_loss"] for r in default]  # same batches, same draws: bit for bit
    assert all(np.isfinite(r["train_loss"]) for r in resident)
    res = rundir.read_json(resident_dir / rundir.RESULTS)
    assert res["test"]["balanced_accuracy"] == rundir.read_json(default_dir / rundir.RESULTS)["test"]["balanced_accuracy"]
    assert rundir.read_json(resident_dir / rundir.DATA_META)["class_names"] == rundir.read_json(default_dir / rundir.DATA_META)["class_names"]
