"""The three data paths (``data.cache``): in-memory uint8 tensor, memory-mapped cache file, streamed
per-image decode; the same pixels through each, and the run records which one it used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import longtail
from longtail import rundir
from longtail.core.schema import DataConfig
from longtail.data import build_data
from longtail.data import cache as cache_mod
from longtail.data.decode import Decoder
from longtail.engine.batches import iterate_batches
from longtail.training.loading import DATA_META

from ..helpers import tiny_config
from .test_build import folder_dataset


def _base(tmp_path):
    root = folder_dataset(tmp_path / "imgs", (12, 6, 3))
    return dict(source={"name": "image_folder", "root": str(root)}, image_size=[6, 4], cache_dir=str(tmp_path / "cache"))


def test_mmap_cache_equals_memory_cache_and_stream_and_is_file_backed(tmp_path, monkeypatch):
    base = _base(tmp_path)
    mapped = build_data(DataConfig(**base, cache="mmap"), seed=0)
    assert mapped.storage() == {"train": "mmap", "val": "mmap", "test": "mmap"}
    memory = build_data(DataConfig(**base), seed=0)  # the same cache file, loaded into memory
    stream = build_data(DataConfig(**base, cache=False), seed=0)
    assert memory.storage()["train"] == "memory" and stream.storage()["train"] == "stream"
    assert torch.equal(mapped.train.tensor(), memory.train.tensor())
    assert all(torch.equal(stream.train[i][0], mapped.train[i][0]) for i in range(len(stream.train)))
    # file-backed: the tensor's storage is the mapped .npy, not a heap copy
    (npy,) = (tmp_path / "cache" / "tensors").glob("*.npy")
    assert torch.equal(mapped.train.images, torch.from_numpy(np.load(npy)))
    if Path("/proc/self/maps").is_file():  # Linux: the cache file is mapped into this process
        assert str(npy.resolve()) in Path("/proc/self/maps").read_text()
    # a second mmap build is a cache hit (nothing decoded)
    monkeypatch.setattr(cache_mod, "decode_all", lambda *a, **k: pytest.fail("decoded again"))
    assert torch.equal(build_data(DataConfig(**base, cache="mmap"), seed=0).train.tensor(), memory.train.tensor())


def test_mmap_cache_is_written_chunk_by_chunk_and_skips_bad_images(tmp_path, monkeypatch):
    root = folder_dataset(tmp_path / "imgs", (5, 4))
    (root / "class1" / "zz_bad.png").write_bytes(b"not a png")
    paths = sorted(str(p) for p in root.rglob("*.png"))
    decoder = Decoder(3, (6, 4), [])
    held = []
    real = cache_mod.decode_all
    monkeypatch.setattr(cache_mod, "MMAP_CHUNK", 3)
    monkeypatch.setattr(cache_mod, "decode_all", lambda p, *a, **k: held.append(len(p)) or real(p, *a, **k))
    images, kept, skipped, hit = cache_mod.cached_decode(paths, decoder, str(tmp_path / "c"), "skip", mmap=True)
    assert not hit and max(held) == 3  # never more than one chunk decoded at a time
    expected, expected_kept, expected_skipped = real(paths, decoder, "skip")
    assert skipped == expected_skipped == [str(root / "class1" / "zz_bad.png")]
    assert kept.tolist() == expected_kept.tolist() and torch.equal(images, expected)
    again, kept2, _, hit2 = cache_mod.cached_decode(paths, decoder, str(tmp_path / "c"), "skip", mmap=True)
    assert hit2 and torch.equal(again, expected) and kept2.tolist() == kept.tolist()


@pytest.mark.parametrize("cache, workers", [(False, 2), ("mmap", 0), ("mmap", 2)])
def test_batches_through_each_path_and_workers_equal_the_memory_batches(tmp_path, cache, workers):
    base = _base(tmp_path)
    memory = build_data(DataConfig(**base), seed=0).train
    other = build_data(DataConfig(**base, cache=cache), seed=0).train
    order = list(np.random.default_rng(1).permutation(len(memory)))
    a = list(iterate_batches(memory, order, 4, 0, seed=0))
    b = list(iterate_batches(other, order, 4, workers, seed=0))
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_the_run_records_its_data_path(tmp_path):
    root = folder_dataset(tmp_path / "imgs", (12, 12))
    data = {"source": {"name": "image_folder", "root": str(root)}, "image_size": [8, 8], "long_tail": None,
            "cache": "mmap", "cache_dir": str(tmp_path / "cache"), "train_transforms": []}
    run = longtail.train(tiny_config(tmp_path, data=data, train={"epochs": 1, "progress": False, "tensorboard": False})).run_dir
    assert rundir.read_json(run / DATA_META)["storage"] == {"train": "mmap", "val": "mmap", "test": "mmap"}
