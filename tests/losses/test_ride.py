"""The `ride` loss against hand computations and a numpy transcription of the official RIDELoss formula.

Official form: frank-xwang/RIDE-LongTailRecognition model/loss.py RIDELoss (defaults max_m 0.5, s 30,
base_loss_factor 1, additional_diversity_factor -0.2, base_diversity_temperature 1, reweight_factor 0.05).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from longtail.core.errors import LongtailError
from longtail.losses import create
from longtail.losses.ride import diversity_weights
from longtail.losses.weighting import effective_number_weights

COUNTS = [50, 20, 10, 5, 2]
N, E, C = 8, 3, len(COUNTS)


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    experts = 5 * torch.randn(N, E, C, generator=g)  # already scaled logits (s * cos lies in [-30, 30])
    return experts, torch.randint(0, C, (N,), generator=g)


def ride(loss, experts: torch.Tensor, targets: torch.Tensor, **kw) -> torch.Tensor:
    return loss(experts.mean(1), targets, experts=experts, **kw)


def official(experts: np.ndarray, y: np.ndarray, counts: list[int], weights: np.ndarray | None = None, sample: np.ndarray | None = None,
             max_m: float = 0.5, s: float = 30.0, base: float = 1.0, div: float = -0.2, temp: float = 1.0, r: float = 0.05) -> float:
    """RIDELoss.forward in numpy: reweighting on (per-class temperature, weighted CE) when ``weights`` are given."""
    n, e_count, c = experts.shape
    counts_ = np.asarray(counts, dtype=np.float64)
    m = 1.0 / np.sqrt(np.sqrt(counts_))
    m = m * (max_m / m.max())
    agg = experts.mean(1)
    if weights is not None:
        w_div = c * (counts_ / counts_.sum()) * r + 1 - r
        t = temp * (w_div / w_div.max())
    else:
        t = np.full(c, temp)
    w = np.ones(n) if weights is None else weights[y]
    si = np.ones(n) if sample is None else sample

    def log_softmax(z: np.ndarray) -> np.ndarray:
        z = z - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))

    total = 0.0
    for e in range(e_count):
        z = (agg if div == 0 else experts[:, e]).copy()
        z[np.arange(n), y] -= s * m[y]
        ce = -log_softmax(z)[np.arange(n), y]
        total += base * (si * w * ce).sum() / w.sum()
        logp = log_softmax(agg / t)
        kl = (np.exp(logp) * (logp - log_softmax(experts[:, e] / t))).sum(1)
        total += div * t.mean() ** 2 * (si * kl).sum() / n
    return float(total)


def test_two_experts_by_hand():
    """z_1 = [1, 0], z_2 = [0, 1], y = 0, no margin: sum of the CEs plus -0.2 * 2 * KL, KL = ln cosh(1/2)."""
    loss = create("ride", [5, 5], max_margin=0.0)
    experts = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    expected = math.log(1 + math.exp(-1)) + math.log(1 + math.e) - 0.2 * 2 * math.log(math.cosh(0.5))
    assert float(ride(loss, experts, torch.tensor([0]))) == pytest.approx(expected, rel=1e-6)
    # temperature 2: KL on z / 2 (ln cosh(1/4)), weighted by T^2 = 4
    hot = create("ride", [5, 5], max_margin=0.0, temperature=2.0)
    expected_hot = math.log(1 + math.exp(-1)) + math.log(1 + math.e) - 0.2 * 4 * 2 * math.log(math.cosh(0.25))
    assert float(ride(hot, experts, torch.tensor([0]))) == pytest.approx(expected_hot, rel=1e-6)


def test_diversity_temperature_weights_by_hand():
    """(C pi_c r + 1 - r) / max for counts 100, 10, 1 and r = 0.05."""
    raw = [3 * (n / 111) * 0.05 + 0.95 for n in (100, 10, 1)]
    assert diversity_weights([100, 10, 1], 0.05) == pytest.approx([v / raw[0] for v in raw], rel=1e-12)
    loss = create("ride", [100, 10, 1])
    assert torch.equal(loss.temperatures(), torch.ones(3))  # before DRW: the plain temperature
    loss.set_class_weights(effective_number_weights([100, 10, 1], 0.9999))
    assert loss.temperatures().numpy() == pytest.approx([v / raw[0] for v in raw], rel=1e-6)
    loss.set_class_weights(np.ones(3))  # uniform weights: nothing re-weights
    assert torch.equal(loss.temperatures(), torch.ones(3))


@pytest.mark.parametrize("reweighted", [False, True])
def test_matches_the_official_formula(reweighted):
    experts, y = batch()
    loss = create("ride", COUNTS)
    weights = effective_number_weights(COUNTS, 0.9999) if reweighted else None
    loss.set_class_weights(weights)
    sample = torch.rand(N, generator=torch.Generator().manual_seed(5))
    for kw, s in (({}, None), ({"sample_weight": sample}, sample.numpy().astype(np.float64))):
        want = official(experts.double().numpy(), y.numpy(), COUNTS, weights, s)
        assert float(ride(loss, experts, y, **kw)) == pytest.approx(want, rel=1e-5)


def test_non_default_factors_match_the_official_formula():
    experts, y = batch(1)
    kw = {"max_margin": 0.3, "scale": 20.0, "base_loss_factor": 0.5, "additional_diversity_factor": -0.45, "temperature": 1.5, "reweight_factor": 0.2}
    loss = create("ride", COUNTS, **kw)
    weights = effective_number_weights(COUNTS, 0.999)
    loss.set_class_weights(weights)
    want = official(experts.double().numpy(), y.numpy(), COUNTS, weights, max_m=0.3, s=20.0, base=0.5, div=-0.45, temp=1.5, r=0.2)
    assert float(ride(loss, experts, y)) == pytest.approx(want, rel=1e-5)


def test_identical_experts_are_e_times_ldam_drw():
    """No disagreement, no diversity term: each expert pays LDAM on z = s * cos, i.e. `ldam` on cos with scale s."""
    cos = torch.tanh(torch.randn(N, C, generator=torch.Generator().manual_seed(3)))
    y = torch.arange(N) % C
    experts = (30 * cos)[:, None, :].expand(N, E, C).contiguous()
    drw = effective_number_weights(COUNTS, 0.9999)
    loss, ldam = create("ride", COUNTS), create("ldam", COUNTS, max_margin=0.5, scale=30.0)
    for weights in (None, drw):
        loss.set_class_weights(weights)
        ldam.set_class_weights(weights)
        assert float(ride(loss, experts, y)) == pytest.approx(E * float(ldam(cos, y)), rel=1e-5)


def test_zero_diversity_trains_every_expert_on_the_aggregate():
    """The official: additional_diversity_factor 0 puts the aggregate in each expert's LDAM term (E times)."""
    experts, y = batch(2)
    loss = create("ride", COUNTS, additional_diversity_factor=0.0)
    ldam = create("ldam", COUNTS, max_margin=0.5, scale=30.0)
    assert float(ride(loss, experts, y)) == pytest.approx(E * float(ldam(experts.mean(1) / 30, y)), rel=1e-5)


def test_gradient_by_finite_differences_and_the_aggregate_is_a_target():
    experts, y = batch(4)
    loss = create("ride", COUNTS)
    loss.set_class_weights(effective_number_weights(COUNTS, 0.9999))
    leaf = experts.clone().requires_grad_(True)
    aggregate = experts.mean(1).requires_grad_(True)
    value = loss(aggregate, y, experts=leaf)
    grad_experts, grad_aggregate = torch.autograd.grad(value, [leaf, aggregate], allow_unused=True)
    assert grad_aggregate is None  # the ensemble distribution is detached, as the official's no_grad
    eps = 1e-2
    for index in [(0, 0, 0), (1, 2, 3), (5, 1, 4), (7, 0, 2)]:
        up, down = experts.clone(), experts.clone()
        up[index] += eps
        down[index] -= eps
        # the aggregate follows the experts, but only as a target: keep it fixed here
        numeric = (float(loss(experts.mean(1), y, experts=up)) - float(loss(experts.mean(1), y, experts=down))) / (2 * eps)
        assert float(grad_experts[index]) == pytest.approx(numeric, rel=2e-2, abs=2e-3), index


def test_without_experts_or_with_the_wrong_shape_is_one_line():
    loss = create("ride", COUNTS)
    logits, y = torch.zeros(4, C), torch.zeros(4, dtype=torch.long)
    with pytest.raises(LongtailError, match="experts=per_expert_logits") as info:
        loss(logits, y)
    assert "\n" not in str(info.value)
    with pytest.raises(LongtailError, match=r"N x E x 5 with N = 4"):
        loss(logits, y, experts=torch.zeros(4, C))
