"""The `bcl` loss against a hand computation and a numpy transcription of the official BalSCL and LogitAdjust.

Official form: FlamieZhu/Balanced-Contrastive-Learning loss/contrastive.py BalSCL (two views, class centres
appended, class-averaged denominators, mean over the 2N anchors), loss/logitadjust.py LogitAdjust (CE on
z + tau log pi, F.cross_entropy's weight=), main.py: alpha * ce_loss + beta * scl_loss.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from longtail.core.errors import ConfigError, LongtailError
from longtail.losses import create
from longtail.losses.bcl import balanced_contrastive_terms

COUNTS = [50, 20, 10, 5, 2]
C, N, D = len(COUNTS), 8, 6


def official_balscl(centers: np.ndarray, features: np.ndarray, targets: np.ndarray, temperature: float) -> float:
    """BalSCL.forward in numpy, step by step: features N x 2 x d, centers C x d (unit rows), targets N."""
    n, c = features.shape[0], centers.shape[0]
    t = np.concatenate([np.tile(targets.reshape(-1, 1), (2, 1)), np.arange(c).reshape(-1, 1)])
    batch_cls_count = np.eye(c)[t.ravel()].sum(0)
    mask = (t[: 2 * n] == t.T).astype(np.float64)
    logits_mask = np.ones_like(mask)
    logits_mask[np.arange(2 * n), np.arange(2 * n)] = 0
    mask = mask * logits_mask
    f = np.concatenate([features[:, 0], features[:, 1], centers])  # torch.cat(torch.unbind(features, dim=1)) + centres
    logits = f[: 2 * n] @ f.T / temperature
    logits = logits - logits.max(1, keepdims=True)
    exp_logits = np.exp(logits) * logits_mask
    per_ins_weight = batch_cls_count[t.ravel()][None, :] - mask
    log_prob = logits - np.log((exp_logits / per_ins_weight).sum(1, keepdims=True))
    mean_log_prob_pos = (mask * log_prob).sum(1) / mask.sum(1)
    return float((-mean_log_prob_pos).reshape(2, n).mean())


def official_logit_adjust(logits: np.ndarray, targets: np.ndarray, counts: list[int], tau: float = 1.0, weight: np.ndarray | None = None) -> float:
    """LogitAdjust.forward: F.cross_entropy(x + tau log pi, target, weight=weight) (a weighted mean)."""
    prior = np.asarray(counts, dtype=np.float64) / sum(counts)
    z = logits + tau * np.log(prior)
    z = z - z.max(1, keepdims=True)
    ce = -(z - np.log(np.exp(z).sum(1, keepdims=True)))[np.arange(len(targets)), targets]
    w = np.ones(len(targets)) if weight is None else weight[targets]
    return float((w * ce).sum() / w.sum())


def by_definition(projections: np.ndarray, centers: np.ndarray, targets: np.ndarray, temperature: float) -> np.ndarray:
    """The paper's per-anchor loss, one anchor at a time, for any number of views (view-major anchors)."""
    n, v, _ = projections.shape
    c = centers.shape[0]
    bank = [(projections[i, k], int(targets[i])) for k in range(v) for i in range(n)] + [(centers[j], j) for j in range(c)]
    counts = np.bincount([label for _, label in bank], minlength=c)
    out = []
    for a in range(n * v):
        anchor, y = bank[a]
        others = [(vec, label) for b, (vec, label) in enumerate(bank) if b != a]
        denominator = sum(math.exp(anchor @ vec / temperature) / (counts[label] - (label == y)) for vec, label in others)
        positives = [anchor @ vec / temperature for vec, label in others if label == y]
        out.append(-np.mean([s - math.log(denominator) for s in positives]))
    return np.array(out)


def unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1)


def batch(seed: int = 0, n: int = N, views: int = 2, targets: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(n, C, generator=g, dtype=torch.float64)
    y = torch.tensor(targets) if targets is not None else torch.randint(0, C, (n,), generator=g)
    projections = unit(torch.randn(n, views, D, generator=g, dtype=torch.float64))
    centers = unit(torch.randn(C, D, generator=g, dtype=torch.float64))
    return logits, y, projections, centers


def bcl(loss, logits, y, projections, centers, **kw) -> float:
    return float(loss(logits.float(), y, projections=projections.float(), centers=centers.float(), **kw))


def test_one_anchor_by_hand():
    """One image, one view, anchor = centre of its class 0, the other centre orthogonal, T = 1:
    l = -(1 - log(e / (2 - 1) + e^0 / 1)) = log(1 + 1/e)."""
    a = torch.tensor([[[1.0, 0.0]]])
    centers = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    terms = balanced_contrastive_terms(a, centers, torch.tensor([0]), temperature=1.0)
    assert float(terms[0]) == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)


@pytest.mark.parametrize("case", ["random", "absent_classes", "one_class", "two_images"])
def test_balscl_matches_the_official_transcription(case):
    targets = {"random": None, "absent_classes": [0, 1, 3, 0, 0, 1, 3, 3], "one_class": [2] * N, "two_images": [4, 0]}[case]
    logits, y, projections, centers = batch(seed=3, n=2 if case == "two_images" else N, targets=targets)
    if case == "absent_classes":
        assert set(y.tolist()) == {0, 1, 3}  # classes 2 and 4 only through their centres
    for temperature in (0.07, 0.1, 1.0):
        ours = balanced_contrastive_terms(projections, centers, y, temperature).mean()
        assert float(ours) == pytest.approx(official_balscl(centers.numpy(), projections.numpy(), y.numpy(), temperature), rel=1e-9)


@pytest.mark.parametrize("views", [1, 2, 3])
def test_per_anchor_terms_match_the_definition_for_any_number_of_views(views):
    _, y, projections, centers = batch(seed=5, views=views, targets=[0, 0, 1, 3, 3, 3, 0, 1])
    ours = balanced_contrastive_terms(projections, centers, y, 0.5).numpy()
    assert np.allclose(ours, by_definition(projections.numpy(), centers.numpy(), y.numpy(), 0.5), rtol=1e-9)


@pytest.mark.parametrize("kwargs", [{}, {"alpha": 2.0, "beta": 0.6, "temperature": 0.1}, {"tau": 0.5, "beta": 0.0}, {"alpha": 0.0}, {"scale": 30.0}])
def test_full_loss_is_alpha_logit_adjusted_ce_plus_beta_balscl(kwargs):
    logits, y, projections, centers = batch(seed=1, targets=[0, 1, 0, 3, 0, 1, 2, 0])
    if "scale" in kwargs:
        logits = torch.tanh(logits)  # cosine-like logits; BCL's NormedLinear multiplies by s = 30 inside its model
    loss = create("bcl", COUNTS, **kwargs)
    alpha, beta = kwargs.get("alpha", 1.0), kwargs.get("beta", 0.35)
    temperature, tau, scale = kwargs.get("temperature", 0.07), kwargs.get("tau", 1.0), kwargs.get("scale", 1.0)
    expected = (alpha * official_logit_adjust(scale * logits.numpy(), y.numpy(), COUNTS, tau)
                + beta * official_balscl(centers.numpy(), projections.numpy(), y.numpy(), temperature))
    assert bcl(loss, logits, y, projections, centers) == pytest.approx(expected, rel=1e-5)


def test_class_weights_act_on_the_ce_term_as_logit_adjusts_weight():
    logits, y, projections, centers = batch(seed=2)
    w = np.array([0.2, 0.5, 1.0, 1.3, 2.0])
    loss = create("bcl", COUNTS, alpha=2.0, beta=0.6, temperature=0.1)
    loss.set_class_weights(w)
    expected = 2.0 * official_logit_adjust(logits.numpy(), y.numpy(), COUNTS, weight=w) + 0.6 * official_balscl(
        centers.numpy(), projections.numpy(), y.numpy(), 0.1)
    assert bcl(loss, logits, y, projections, centers) == pytest.approx(expected, rel=1e-5)


def test_sample_weights_weigh_each_images_anchors():
    logits, y, projections, centers = batch(seed=4)
    s = torch.rand(N, generator=torch.Generator().manual_seed(9))
    loss = create("bcl", COUNTS, alpha=0.0, beta=1.0, temperature=0.2)
    terms = balanced_contrastive_terms(projections, centers, y, 0.2).view(2, N)
    expected = float((terms * s.double()).sum() / (2 * N))
    assert bcl(loss, logits, y, projections, centers, sample_weight=s) == pytest.approx(expected, rel=1e-5)


def test_order_of_the_images_does_not_matter():
    logits, y, projections, centers = batch(seed=6)
    loss = create("bcl", COUNTS)
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(0))
    assert bcl(loss, logits, y, projections, centers) == pytest.approx(bcl(loss, logits[perm], y[perm], projections[perm], centers), rel=1e-6)


def test_gradients_reach_projections_centres_and_logits_and_stay_finite_when_saturated():
    logits, y, projections, centers = batch(seed=7)
    z = (20 * logits).float().requires_grad_(True)
    p = projections.float().requires_grad_(True)
    c = centers.float().requires_grad_(True)
    value = create("bcl", COUNTS, temperature=0.01)(z, y, projections=p, centers=c)  # similarities up to 100
    value.backward()
    assert torch.isfinite(value)
    for grad in (z.grad, p.grad, c.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_uniform_counts_make_the_ce_term_plain_cross_entropy():
    logits, y, projections, centers = batch(seed=8)
    loss = create("bcl", [7] * C, beta=0.0)
    assert bcl(loss, logits, y, projections, centers) == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-5)


def test_missing_or_misshapen_inputs_and_bad_options_are_one_line_errors():
    logits, y, projections, centers = (t.float() if t.is_floating_point() else t for t in batch())
    loss = create("bcl", COUNTS)
    with pytest.raises(ConfigError, match="method: {name: bcl}.*model.contrastive") as info:
        loss(logits, y)
    assert "\n" not in str(info.value)
    with pytest.raises(LongtailError, match="projections must be N x V x d"):
        loss(logits, y, projections=projections[:, 0], centers=centers)
    with pytest.raises(LongtailError, match="centers must be 5 x 6"):
        loss(logits, y, projections=projections, centers=centers[:3])
    for kwargs, key in [({"temperature": 0.0}, "temperature"), ({"beta": -1.0}, "beta"), ({"alpha": -0.1}, "alpha"),
                        ({"scale": 0.0}, "scale"), ({"tau": -1.0}, "tau")]:
        with pytest.raises(ConfigError, match=key) as info:
            create("bcl", COUNTS, **kwargs)
        assert "\n" not in str(info.value)
