"""Class-weight schedules: exact values per epoch, validation feedback, SPBL cost vectors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from longtail.core.errors import ConfigError, LongtailError
from longtail.core.registry import WEIGHTS
from longtail.core.schema import Component
from longtail.losses import build_weights, create, create_weights, spbl_cost_vector
from longtail.losses.weights import WeightSchedule

COUNTS = [100, 10, 1]


def test_registry_contract_for_every_schedule() -> None:
    assert {"uniform", "inverse_frequency", "effective_number", "drw", "cls", "cdb", "spbl_cost"} <= set(WEIGHTS.names())
    for name in WEIGHTS.names():
        schedule = create_weights(name, COUNTS)
        assert isinstance(schedule, WeightSchedule)
        schedule.on_validation_end(np.array([0.9, 0.5, 0.2]))
        for epoch in range(1, 71):
            w = schedule.weights(epoch, 70)
            if w is not None:
                assert w.shape == (3,) and np.all(np.isfinite(w)) and np.all(w > 0), name
        assert WEIGHTS.describe()[name]


def test_uniform_and_inverse_frequency() -> None:
    assert create_weights("uniform", COUNTS).weights(1, 10) is None
    w = create_weights("inverse_frequency", COUNTS).weights(1, 10)
    assert np.allclose(w, np.array([0.01, 0.1, 1.0]) / 1.11 * 3)
    extra = create_weights("inverse_frequency", COUNTS, power=2.0, extra=[1.0, 1.0, 0.5]).weights(1, 10)
    raw = np.array([0.01, 0.1, 0.5]) ** 2
    assert np.allclose(extra, raw / raw.sum() * 3)
    assert np.allclose(create_weights("inverse_frequency", COUNTS, power=0.0).weights(1, 10), np.ones(3))
    with pytest.raises(ConfigError, match="extra"):
        create_weights("inverse_frequency", COUNTS, extra=[1.0, 2.0])


def test_effective_number() -> None:
    w = create_weights("effective_number", COUNTS, beta=0.9).weights(1, 10)
    inv_eff = np.array([0.1 / (1 - 0.9**100), 0.1 / (1 - 0.9**10), 1.0])
    assert np.allclose(w, inv_eff / inv_eff.sum() * 3)
    assert w.sum() == pytest.approx(3.0)
    assert np.allclose(create_weights("effective_number", COUNTS, beta=0.0).weights(1, 10), np.ones(3))


def test_drw_switches_exactly_at_its_start_epoch() -> None:
    drw = create_weights("drw", COUNTS, start_epoch=50, kind="inverse_frequency", power=1.0)
    assert drw.weights(1, 70) is None and drw.weights(49, 70) is None
    expected = create_weights("inverse_frequency", COUNTS).weights(1, 70)
    assert np.allclose(drw.weights(50, 70), expected) and np.allclose(drw.weights(70, 70), expected)
    ldam = create_weights("drw", COUNTS)  # default: effective number, last 20% of the stage
    assert ldam.first_reweighted_epoch(200) == 161
    assert ldam.weights(160, 200) is None
    assert np.allclose(ldam.weights(161, 200), create_weights("effective_number", COUNTS, beta=0.9999).weights(1, 200))
    with pytest.raises(ConfigError, match="kind"):
        create_weights("drw", COUNTS, kind="sqrt")
    with pytest.raises(ConfigError, match="1-based"):
        create_weights("drw", COUNTS, start_epoch=0)


def test_cls_power_ramp_matches_mbit() -> None:
    P = 1.2
    cls = create_weights("cls", COUNTS, power=P, start_epoch=20, end_epoch=60)
    assert [cls.power_at(e) for e in (1, 20, 30, 40, 50, 60, 70)] == pytest.approx([0, 0, 0.0625 * P, 0.25 * P, 0.5625 * P, P, P])
    assert np.allclose(cls.weights(20, 70), np.ones(3))
    raw = np.array([1 / 100, 1 / 10, 1.0]) ** (0.25 * P)
    assert np.allclose(cls.weights(40, 70), raw / raw.sum() * 3)
    assert np.allclose(cls.weights(65, 70), create_weights("inverse_frequency", COUNTS, power=P).weights(1, 70))


def test_cdb_schedule_follows_each_validation_and_shares_the_loss_formula() -> None:
    cdb = create_weights("cdb", COUNTS, tau=2.0)
    assert cdb.weights(1, 10) is None  # uniform before the first validation
    cdb.on_validation_end(np.array([0.9, 0.5, 0.0]))
    d = np.array([0.1, 0.5, 1.0]) ** 2
    assert np.allclose(cdb.weights(2, 10), d / d.sum() * 3)
    cdb.on_validation_end(np.array([0.5, 0.5, 0.75]))
    d = np.array([0.5, 0.5, 0.25]) ** 2
    assert np.allclose(cdb.weights(3, 10), d / d.sum() * 3)
    loss = create("cdb_ce", COUNTS, tau=2.0)
    loss.on_validation_end(np.array([0.5, 0.5, 0.75]))
    assert np.allclose(loss.cdb_weights.numpy(), cdb.weights(3, 10), rtol=1e-6)
    restored = create_weights("cdb", COUNTS, tau=2.0)
    restored.load_state_dict(cdb.state_dict())
    assert np.allclose(restored.weights(4, 10), cdb.weights(4, 10))


@pytest.mark.parametrize("form", ["imagenet", "cifar"])
def test_cdb_schedule_dynamic_tau(form: str) -> None:
    acc = np.array([0.7, 0.2, 0.5])
    ratio = 0.7 / 0.21
    tau = 2 / (1 + math.exp(1 - ratio)) if form == "imagenet" else 1 / (1 + math.exp(-ratio))
    cdb = create_weights("cdb", COUNTS, tau="dynamic", dynamic_form=form)
    cdb.on_validation_end(acc)
    d = (1 - acc) ** tau
    assert np.allclose(cdb.weights(2, 10), d / d.sum() * 3)


def test_cdb_schedule_rejects_bad_accuracy() -> None:
    cdb = create_weights("cdb", COUNTS)
    with pytest.raises(LongtailError, match="3 classes"):
        cdb.on_validation_end(np.array([0.5, 0.5]))
    with pytest.raises(LongtailError, match=r"\[0, 1\]"):
        cdb.on_validation_end(np.array([50.0, 20.0, 10.0]))  # percentages instead of fractions


def test_spbl_cost_vector_is_seeded_and_ranked() -> None:
    h = np.array([5.0, 40.0, 12.0, 1.0, 30.0, 7.0])
    a, b = spbl_cost_vector(h, seed=3), spbl_cost_vector(h, seed=3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, spbl_cost_vector(h, seed=4))
    assert a.min() == pytest.approx(1.0) and a.max() <= 10.0
    assert a[1] == a.min()  # largest H (class 1) gets the smallest cost
    assert a[3] == a.max()  # smallest H (class 3) gets the largest cost
    rng = np.random.default_rng(3)
    costs = np.sort(rng.uniform(1, 10, 6))
    costs /= costs[0]
    assert np.allclose(np.sort(a), costs)  # the costs themselves are U[1, 10] divided by their min
    middles = {tuple(np.round(spbl_cost_vector(h, seed=s)[[0, 2, 4, 5]], 8)) for s in range(30)}
    orders = {tuple(np.argsort(m)) for m in middles}
    assert len(orders) > 1  # middle ranks are shuffled, not sorted by H
    assert spbl_cost_vector([2.0, 1.0], seed=0)[0] == 1.0
    assert spbl_cost_vector([4.0], seed=0).tolist() == [1.0]


def test_spbl_cost_schedule_defaults_to_class_counts() -> None:
    schedule = create_weights("spbl_cost", COUNTS, seed=1)
    w = schedule.weights(1, 10)
    assert np.array_equal(w, spbl_cost_vector(np.array(COUNTS, dtype=float), seed=1))
    assert w[0] == 1.0 and w[2] == w.max()
    assert schedule.weights(9, 10) is w  # constant over epochs
    normalised = create_weights("spbl_cost", COUNTS, seed=1, normalize=True).weights(1, 10)
    assert normalised.sum() == pytest.approx(3.0)
    custom = create_weights("spbl_cost", COUNTS, seed=1, complexity=[1.0, 2.0, 3.0]).weights(1, 10)
    assert custom[2] == 1.0 and custom[0] == custom.max()


def test_build_weights_from_config_component() -> None:
    cls = build_weights(Component(name="cls", power=1.2), COUNTS)
    assert cls.power_at(60) == 1.2
    with pytest.raises(ConfigError, match="did you mean 'start_epoch'"):
        build_weights(Component(name="drw", start_epok=5), COUNTS)
    with pytest.raises(LongtailError, match="no training samples"):
        build_weights(Component(name="uniform"), [3, 0])
