"""SADE's diverse-expert loss against a numpy transcription of the official DiverseExpertLoss
(Vanint/SADE-AgnosticLT model/loss.py): CE (forward expert) + balanced softmax (uniform expert) +
CE on z + log pi - tau log pi_inv (backward expert)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from longtail.core.errors import ConfigError, LongtailError
from longtail.losses import create
from longtail.losses.sade import inverse_prior

COUNTS = [50, 20, 9, 30, 4]  # not sorted: the inverse prior must follow rank, not position


def numpy_ce(z: np.ndarray, y: np.ndarray) -> float:
    z = z - z.max(1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
    return float(-log_p[np.arange(len(y)), y].mean())


def official_sade(experts: np.ndarray, y: np.ndarray, counts: list[int], tau: float) -> float:
    prior = np.asarray(counts, dtype=np.float64) / np.sum(counts)
    # inverse_prior: sort, then give the class of rank k the value of rank C-1-k
    order = np.argsort(prior, kind="stable")
    rank = np.argsort(order, kind="stable")
    inv = np.sort(prior)[len(prior) - 1 - rank]
    z1, z2, z3 = experts[:, 0], experts[:, 1], experts[:, 2]
    return (numpy_ce(z1, y) + numpy_ce(z2 + np.log(prior + 1e-9), y)
            + numpy_ce(z3 + np.log(prior + 1e-9) - tau * np.log(inv + 1e-9), y))


def test_inverse_prior_reverses_the_ranks():
    assert torch.allclose(inverse_prior(torch.tensor([0.5, 0.3, 0.2])), torch.tensor([0.2, 0.3, 0.5]))
    # rank order, not position: the largest (0.6) gets the smallest value and the smallest (0.1) the largest
    assert torch.allclose(inverse_prior(torch.tensor([0.1, 0.6, 0.3])), torch.tensor([0.6, 0.1, 0.3]))


@pytest.mark.parametrize("tau", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_value_is_the_officials(tau, seed):
    g = torch.Generator().manual_seed(seed)
    experts = 5 * torch.randn(16, 3, len(COUNTS), generator=g, dtype=torch.float64)
    y = torch.randint(0, len(COUNTS), (16,), generator=g)
    loss = create("sade", COUNTS, tau=tau)
    value = loss(experts.float().mean(1), y, experts=experts.float())
    assert value.item() == pytest.approx(official_sade(experts.numpy(), y.numpy(), COUNTS, tau), rel=1e-5)


def test_each_expert_learns_from_its_own_term_only():
    """The gradient on expert e's logits is that of its own shifted CE; the aggregate gets none."""
    g = torch.Generator().manual_seed(3)
    experts = torch.randn(8, 3, len(COUNTS), generator=g).requires_grad_(True)
    logits = experts.detach().mean(1).requires_grad_(True)
    y = torch.randint(0, len(COUNTS), (8,), generator=g)
    loss = create("sade", COUNTS)
    loss(logits, y, experts=experts).backward()
    assert logits.grad is None or torch.count_nonzero(logits.grad) == 0
    prior = torch.tensor(COUNTS, dtype=torch.float32) / sum(COUNTS)
    z = experts.detach()[:, 1].clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(z + torch.log(prior + 1e-9), y).backward()
    assert torch.allclose(experts.grad[:, 1], z.grad, atol=1e-6)


def test_needs_three_experts_and_a_non_negative_tau():
    loss = create("sade", COUNTS)
    with pytest.raises(LongtailError, match="exactly 3 experts.*num_experts: 3"):
        loss(torch.zeros(2, len(COUNTS)), torch.tensor([0, 1]), experts=torch.zeros(2, 2, len(COUNTS)))
    with pytest.raises(LongtailError, match="experts="):
        loss(torch.zeros(2, len(COUNTS)), torch.tensor([0, 1]))
    with pytest.raises(ConfigError, match="tau"):
        create("sade", COUNTS, tau=-1.0)
