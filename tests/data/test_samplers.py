"""Samplers: target class distributions, determinism per (seed, epoch), sharding, exact over-sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chi2

from longtail.core.errors import ConfigError, DataError
from longtail.core.registry import SAMPLERS
from longtail.core.schema import Component
from longtail.data.samplers import DistributedShard, build_sampler

COUNTS = np.array([60, 25, 10, 4, 1])
# shuffled so class membership is not contiguous in the dataset
TARGETS = np.random.default_rng(0).permutation(np.repeat(np.arange(len(COUNTS)), COUNTS))
N = int(COUNTS.sum())
ALL = ["instance", "class_balanced", "square_root", "progressive", "reverse", "oversample", "effective_number"]


def make(name: str, seed: int = 0, **kw):
    if name == "progressive":
        kw.setdefault("max_epoch", 10)
    return SAMPLERS.create(name, targets=TARGETS, seed=seed, **kw)


def hand_target(name: str, epoch: int = 0, max_epoch: int = 10) -> np.ndarray:
    """Each sampler's class distribution written out from its definition."""
    n = COUNTS.astype(float)
    if name == "instance":
        p = n
    elif name in ("class_balanced", "oversample"):
        p = np.ones_like(n)
    elif name == "square_root":
        p = np.sqrt(n)
    elif name == "reverse":
        p = n.max() / n
    elif name == "effective_number":
        p = n * (1 - 0.9999) / (1 - 0.9999**n)
    elif name == "progressive":
        t = epoch / max_epoch
        return (1 - t) * n / n.sum() + t / len(n)
    return p / p.sum()


def empirical(sampler, epochs: range) -> np.ndarray:
    hist = np.zeros(len(COUNTS))
    for e in epochs:
        sampler.set_epoch(e)
        hist += np.bincount(TARGETS[list(sampler)], minlength=len(COUNTS))
    return hist


def chi_square_ok(hist: np.ndarray, p: np.ndarray) -> bool:
    expected = hist.sum() * p
    stat = float(((hist - expected) ** 2 / expected).sum())
    return stat < chi2.ppf(0.9999, df=len(p) - 1)


@pytest.mark.parametrize("name", ["class_balanced", "square_root", "reverse", "effective_number"])
def test_class_frequencies_converge_to_target(name):
    sampler = make(name, seed=3)
    p = hand_target(name)
    np.testing.assert_allclose(sampler.class_probabilities(), p, rtol=1e-12)
    hist = empirical(sampler, range(60))
    assert chi_square_ok(hist, p), (hist / hist.sum(), p)
    # and clearly not the instance distribution
    assert not chi_square_ok(hist, hand_target("instance"))


def test_instance_sampler_is_a_permutation_every_epoch():
    s = make("instance", seed=1)
    for e in range(3):
        s.set_epoch(e)
        assert sorted(s) == list(range(N))


def test_instance_sampler_accepts_unlabelled_but_class_aware_do_not():
    t = TARGETS.copy()
    t[:3] = -1
    assert sorted(SAMPLERS.create("instance", targets=t, seed=0)) == list(range(N))
    with pytest.raises(DataError, match="unlabelled"):
        SAMPLERS.create("class_balanced", targets=t, seed=0)


def test_progressive_moves_from_instance_to_class_balanced():
    s = make("progressive", seed=5, max_epoch=10)
    for epoch in (0, 5, 10):
        s.set_epoch(epoch)
        p = hand_target("progressive", epoch, 10)
        np.testing.assert_allclose(s.class_probabilities(), p, rtol=1e-12)
        hist = np.zeros(len(COUNTS))
        for rep in range(40):  # same epoch, other seeds: many draws from one p(t)
            other = make("progressive", seed=100 * rep, max_epoch=10)
            other.set_epoch(epoch)
            hist += np.bincount(TARGETS[list(other)], minlength=len(COUNTS))
        assert chi_square_ok(hist, p)
    with pytest.raises(ConfigError, match="max_epoch"):
        SAMPLERS.create("progressive", targets=TARGETS, seed=0)


def test_oversample_exact_counts_and_copies():
    targets = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 0])  # counts 8, 3, 2
    s = SAMPLERS.create("oversample", targets=targets, seed=0)
    assert len(s) == 3 * 8
    idx = np.array(list(s))
    np.testing.assert_array_equal(np.bincount(targets[idx]), [8, 8, 8])
    copies = np.bincount(idx, minlength=len(targets))
    # class 1 (indices 7, 8, 9): 8 = 2*3 + 2 -> first two images 3 copies, the last 2
    np.testing.assert_array_equal(copies[[7, 8, 9]], [3, 3, 2])
    # class 2 (indices 10, 11): 8 = 4*2 -> 4 copies each; class 0: 1 copy each
    np.testing.assert_array_equal(copies[[10, 11]], [4, 4])
    np.testing.assert_array_equal(copies[targets == 0], np.ones(8))
    s.set_epoch(1)
    idx1 = np.array(list(s))
    assert not np.array_equal(idx, idx1) and np.array_equal(np.sort(idx), np.sort(idx1))


@pytest.mark.parametrize("name", ALL)
def test_same_seed_and_epoch_same_stream_other_epoch_differs(name):
    a, b = make(name, seed=7), make(name, seed=7)
    a.set_epoch(2)
    b.set_epoch(2)
    torch.manual_seed(0)
    first = list(a)
    torch.manual_seed(1)  # the global RNG must not matter
    assert list(b) == first and list(a) == first
    assert len(first) == len(a)
    b.set_epoch(3)
    assert list(b) != first
    assert list(make(name, seed=8)) != list(make(name, seed=7))


def test_num_samples_sets_epoch_length():
    s = make("class_balanced", num_samples=17)
    assert len(s) == 17 and len(list(s)) == 17
    with pytest.raises(ConfigError, match="num_samples"):
        make("reverse", num_samples=0)


def test_absent_class_is_never_drawn():
    targets = np.array([0, 0, 0, 2, 2])  # class 1 has no image
    s = SAMPLERS.create("reverse", targets=targets, seed=0, num_samples=200)
    np.testing.assert_allclose(s.class_probabilities(), [0.4, 0.0, 0.6])
    assert set(targets[list(s)]) == {0, 2}


@pytest.mark.parametrize("world_size,drop_last", [(3, False), (4, False), (3, True), (1, False)])
def test_distributed_shards_are_disjoint_and_cover_the_stream(world_size, drop_last):
    base = make("class_balanced", seed=2, num_samples=22)
    shards = [DistributedShard(make("class_balanced", seed=2, num_samples=22), r, world_size, drop_last) for r in range(world_size)]
    for sh in shards:
        sh.set_epoch(4)
    base.set_epoch(4)
    stream = list(base)
    parts = [list(sh) for sh in shards]
    per_rank = 22 // world_size if drop_last else -(-22 // world_size)
    assert all(len(p) == per_rank == len(sh) for p, sh in zip(parts, shards))
    # rank r holds stream positions r, r+W, ...: interleaving the shards back gives the stream
    # (padded with its head, or with its tail dropped), so shards are disjoint and cover it
    padded = (stream + stream)[: per_rank * world_size]
    rebuilt = [parts[pos % world_size][pos // world_size] for pos in range(per_rank * world_size)]
    assert rebuilt == padded
    if not drop_last:
        assert padded[: len(stream)] == stream
    # shards follow the epoch
    shards[0].set_epoch(5)
    assert list(shards[0]) != parts[0]


def test_distributed_shard_rejects_bad_rank():
    with pytest.raises(ConfigError, match="rank"):
        DistributedShard(make("instance"), rank=2, world_size=2)


def test_build_sampler_passes_max_epoch_only_where_accepted():
    s = build_sampler(Component(name="progressive"), TARGETS, seed=1, max_epoch=4)
    assert s.max_epoch == 4
    s = build_sampler(Component(name="effective_number", beta=0.99), TARGETS, seed=1, max_epoch=4)
    np.testing.assert_allclose(s.class_probabilities(), (lambda w: w / w.sum())(COUNTS * 0.01 / (1 - 0.99**COUNTS)))
    with pytest.raises(ConfigError, match="'bta' is not a parameter.*did you mean 'beta'"):
        build_sampler(Component(name="effective_number", bta=0.9), TARGETS, seed=1)
    with pytest.raises(ConfigError, match="sampler.seed"):
        build_sampler(Component(name="instance", seed=3), TARGETS, seed=1)


def test_bad_targets_are_one_line_errors():
    with pytest.raises(DataError, match="non-empty 1-D"):
        SAMPLERS.create("instance", targets=np.zeros((2, 2), dtype=int), seed=0)
    with pytest.raises(DataError, match="integer"):
        SAMPLERS.create("instance", targets=np.array([0.5, 1.0]), seed=0)
