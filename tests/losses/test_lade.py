"""LADE (Hong et al., CVPR 2021) against hand computations and hyperconnect/LADE's formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from longtail.core.errors import ConfigError
from longtail.losses import create
from longtail.losses.lade import lade_regularizer

Z = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-0.5, 1.5, 0.0], [0.3, -2.0, 1.0], [1.0, 1.0, -0.5]])
COUNTS = np.array([100.0, 10.0, 1.0])


def np_log_softmax(z: np.ndarray) -> np.ndarray:
    m = z.max(1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(1, keepdims=True))


def np_lade(z: np.ndarray, y: np.ndarray, counts: np.ndarray, alpha: float, lam: float) -> float:
    """hyperconnect/LADE: PriorCELoss (loss/PriorCELoss.py) + alpha * LADELoss (loss/LADELoss.py), written out
    in numpy with the official epsilons (1e-9 inside the logs, 1e-8 added to the per-class batch counts)."""
    n, c = z.shape
    prior = counts / counts.sum()
    prior_ce = -np_log_softmax(z + np.log(prior + 1e-9))[np.arange(n), y].mean()
    estimate = 0.0
    for k in range(c):
        in_k = y == k
        first = z[in_k, k].sum() / (in_k.sum() + 1e-8)
        spread = z[:, k] - np.log(prior[k] + 1e-9) + np.log(1.0 / c + 1e-9)
        second = np.log(np.exp(spread).sum()) - np.log(n)
        estimate += prior[k] * (first - second - lam * second**2)
    return float(prior_ce - alpha * estimate)


@pytest.mark.parametrize("targets", [[0, 2, 1, 1, 0], [0, 0, 1, 1, 1]], ids=["every class", "class 2 absent"])
@pytest.mark.parametrize("alpha,lam", [(0.1, 0.1), (0.1, 0.01), (1.0, 0.5)])
def test_value_equals_the_official_formula(targets, alpha, lam):
    y = np.array(targets)
    loss = create("lade", COUNTS, alpha=alpha, remine_lambda=lam)
    value = loss(torch.tensor(Z, dtype=torch.float32), torch.tensor(y)).item()
    assert value == pytest.approx(np_lade(Z, y, COUNTS, alpha, lam), rel=1e-5, abs=1e-6)


def test_hand_computed_values():
    # zero logits, balanced counts: PriorCE = log 2; first_c = 0 and second_c = log(2 * 1) - log 2 = 0, so R = 0
    zeros, y = torch.zeros(2, 2), torch.tensor([0, 1])
    assert create("lade", [5, 5])(zeros, y).item() == pytest.approx(math.log(2), abs=1e-7)
    # zero logits, counts [3, 1] (pi = 3/4, 1/4), lambda 0.5, alpha 1: log_softmax(log pi) = log pi, so
    # PriorCE = (log 4/3 + log 4) / 2; second_c = log(2 / (2 pi_c)) - log 2 = -log(2 pi_c), first_c = 0,
    # R = sum_c pi_c (second_c + 0.5 second_c^2)
    s0, s1 = -math.log(1.5), -math.log(0.5)
    expected = (math.log(4 / 3) + math.log(4)) / 2 + 0.75 * (s0 + 0.5 * s0**2) + 0.25 * (s1 + 0.5 * s1**2)
    assert create("lade", [3, 1], alpha=1.0, remine_lambda=0.5)(zeros, y).item() == pytest.approx(expected, rel=1e-6)


def test_prior_ce_is_balanced_softmax():
    """PriorCE CE(z + log pi) and balanced softmax CE(z + log n) are one formula (log n - log pi = log sum n)."""
    z = torch.tensor(Z, dtype=torch.float32)
    y = torch.tensor([0, 2, 1, 1, 0])
    s = torch.tensor([0.2, 1.0, 0.5, 0.7, 1.3])
    w = torch.tensor([0.5, 1.0, 2.0])
    prior_ce, balanced = create("lade", COUNTS, alpha=0.0), create("balanced_softmax", COUNTS)
    for loss in (prior_ce, balanced):
        loss.set_class_weights(w)
    assert torch.allclose(prior_ce(z, y), balanced(z, y), rtol=1e-6)
    assert torch.allclose(prior_ce(z, y, sample_weight=s), balanced(z, y, sample_weight=s), rtol=1e-6)
    # with the regulariser on, LADE minus alpha R is balanced softmax again
    lade = create("lade", COUNTS, alpha=0.1, remine_lambda=0.1)
    lade.set_class_weights(w)
    prior = torch.tensor(COUNTS / COUNTS.sum(), dtype=torch.float32)
    rest = 0.1 * lade_regularizer(z, y, prior, 0.1, s)
    assert torch.allclose(lade(z, y, sample_weight=s) - rest, balanced(z, y, sample_weight=s), rtol=1e-5)


def test_gradient_passes_gradcheck_in_float64():
    prior = torch.tensor(COUNTS / COUNTS.sum(), dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 1, 0])
    s = torch.tensor([0.2, 1.0, 0.5, 0.7, 1.3], dtype=torch.float64)

    def total(z: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(z + prior.log(), y) + 0.1 * lade_regularizer(z, y, prior, 0.1)

    z = torch.tensor(Z, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(total, (z,), eps=1e-6, atol=1e-7)
    assert torch.autograd.gradcheck(lambda v: lade_regularizer(v, y, prior, 0.5, s), (z,), eps=1e-6, atol=1e-7)


def test_module_gradient_is_finite_and_matches_float64():
    prior = torch.tensor(COUNTS / COUNTS.sum(), dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 1, 0])
    z32 = torch.tensor(Z, dtype=torch.float32, requires_grad=True)
    create("lade", COUNTS)(z32, y).backward()
    z64 = torch.tensor(Z, dtype=torch.float64, requires_grad=True)
    (F.cross_entropy(z64 + prior.log(), y) + 0.1 * lade_regularizer(z64, y, prior, 0.1)).backward()
    assert torch.isfinite(z32.grad).all()
    assert torch.allclose(z32.grad.double(), z64.grad, atol=1e-6)


def test_defaults_and_bad_hyper_parameters():
    loss = create("lade", COUNTS)
    assert (loss.alpha, loss.remine_lambda) == (0.1, 0.1)  # hyperconnect/LADE main.py --alpha 0.1, config remine_lambda 0.1
    for kwargs, key in [({"alpha": -1.0}, "alpha"), ({"remine_lambda": -0.1}, "remine_lambda")]:
        with pytest.raises(ConfigError, match=key):
            create("lade", COUNTS, **kwargs)
