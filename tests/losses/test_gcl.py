"""GCL (Li et al., CVPR 2022) against hand computations and a transcription of Keke921/GCLLoss losses.py."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import normal

from longtail.core.errors import ConfigError
from longtail.losses import create
from longtail.losses.gcl import cloud_amplitudes, clouded_logits, draw_cloud_noise

COUNTS = [100, 10, 1]  # log n_max - log n_j = 0, ln 10, ln 100: amplitudes 0, 1/2, 1


def batch(n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    cosine = torch.rand(n, len(COUNTS), generator=g) * 2 - 1
    return cosine, torch.randint(0, len(COUNTS), (n,), generator=g)


def official_gcl(cosine, target, counts, m, s, noise_mul, train_cls=False, gamma=0.0, weight=None):
    """Keke921/GCLLoss losses.py GCLLoss.forward (and focal_loss), on the CPU: the same operations in the same order."""
    m_list = torch.log(torch.tensor(counts, dtype=torch.float32))
    m_list = m_list.max() - m_list
    index = torch.zeros_like(cosine, dtype=torch.bool)
    index.scatter_(1, target.view(-1, 1), True)
    noise = normal.Normal(0, 1 / 3).sample(cosine.shape).clamp(-1, 1)
    cosine = cosine - noise_mul * noise.abs() / m_list.max() * m_list
    output = torch.where(index, cosine - m, cosine)
    if train_cls:
        values = F.cross_entropy(s * output, target, reduction="none", weight=weight)
        p = torch.exp(-values)
        return ((1 - p.detach()) ** gamma * values).mean()
    return F.cross_entropy(s * output, target, weight=weight)


def test_amplitudes_by_hand_and_zero_on_balanced_data():
    assert torch.allclose(cloud_amplitudes(torch.tensor([100.0, 10.0, 1.0])), torch.tensor([0.0, 0.5, 1.0]))
    assert torch.equal(cloud_amplitudes(torch.tensor([7.0, 7.0])), torch.zeros(2))  # the official 0/0 is NaN


def test_noise_is_the_official_draw_bit_for_bit():
    torch.manual_seed(3)
    ours = draw_cloud_noise((64, 10))
    torch.manual_seed(3)
    official = normal.Normal(0, 1 / 3).sample((64, 10)).clamp(-1, 1).abs()
    assert torch.equal(ours, official)
    assert ours.min() >= 0 and ours.max() <= 1


def test_clouded_logits_by_hand():
    # counts [4, 1]: amplitudes [0, 1]; noise_mul 0.5, margin 0.1, target 0:
    # z = [0.5 - 0 - 0.1, 0.2 - 0.5 * 0.6 * 1] = [0.4, -0.1]; target 1: [0.5, 0.2 - 0.3 - 0.1] = [0.5, -0.2]
    a = cloud_amplitudes(torch.tensor([4.0, 1.0]))
    c, noise = torch.tensor([[0.5, 0.2], [0.5, 0.2]]), torch.tensor([[0.3, 0.6], [0.3, 0.6]])
    z = clouded_logits(c, torch.tensor([0, 1]), noise, a, noise_mul=0.5, margin=0.1)
    assert torch.allclose(z, torch.tensor([[0.4, -0.1], [0.5, -0.2]]))


def test_loss_value_by_hand_with_an_injected_generator():
    """One sample, counts [4, 1], scale 10, target 0: CE of [10 (0.5 - 0.1), 10 (0.2 - 0.5 noise)] written out."""
    loss = create("gcl", [4, 1], margin=0.1, scale=10.0, noise_mul=0.5)
    loss.generator = torch.Generator().manual_seed(11)
    noise = draw_cloud_noise((1, 2), torch.Generator().manual_seed(11))
    z0, z1 = 10 * (0.5 - 0.1), 10 * (0.2 - 0.5 * float(noise[0, 1]))  # the head column carries no cloud
    expected = -z0 + math.log(math.exp(z0) + math.exp(z1))
    assert loss(torch.tensor([[0.5, 0.2]]), torch.tensor([0])).item() == pytest.approx(expected, rel=1e-5)


def test_the_cloud_touches_every_class_but_the_largest():
    """The official code noises all C logits of a row (targets and non-targets), scaled by the column's amplitude."""
    c, y = batch(n=200)
    noise = draw_cloud_noise(c.shape, torch.Generator().manual_seed(0))
    shift = c - clouded_logits(c, y, noise, cloud_amplitudes(torch.tensor(COUNTS, dtype=torch.float32)), 0.5, 0.0)
    assert torch.equal(shift[:, 0], torch.zeros(200))  # the largest class: amplitude 0
    for j in (1, 2):
        non_target = y != j
        assert (shift[non_target, j] > 0).all() and (shift[~non_target, j] > 0).all()
    assert shift[:, 2].max() <= 0.5 + 1e-6 and shift[:, 1].max() <= 0.25 + 1e-6  # noise_mul * amplitude bounds


@pytest.mark.parametrize("stage", ["backbone", "classifier"])
@pytest.mark.parametrize("weighted", [False, True])
def test_value_equals_the_official_forward(stage, weighted):
    """cifar_train_backbone.py GCLLoss(m=0, s=30, noise_mul=0.5); cifar_train_classifier.py GCLLoss(m=0.1, s=20,
    train_cls=True, noise_mul=0.5, gamma=1): the same global RNG state gives the same noise and the same value."""
    c, y = batch(n=16)
    w = torch.tensor([0.5, 1.0, 2.0]) if weighted else None
    if stage == "backbone":
        ours, kw = create("gcl", COUNTS, margin=0.0, scale=30.0, noise_mul=0.5), {"m": 0.0, "s": 30.0, "noise_mul": 0.5}
    else:
        ours = create("gcl", COUNTS, margin=0.1, scale=20.0, noise_mul=0.5, gamma=1.0)
        kw = {"m": 0.1, "s": 20.0, "noise_mul": 0.5, "train_cls": True, "gamma": 1.0}
    ours.set_class_weights(w)
    torch.manual_seed(5)
    official = official_gcl(c, y, COUNTS, weight=w, **kw)
    torch.manual_seed(5)
    assert ours(c, y).item() == pytest.approx(official.item(), rel=1e-5)


def test_without_noise_it_is_ce_on_the_scaled_margined_cosine():
    c, y = batch()
    loss = create("gcl", COUNTS, margin=0.2, scale=16.0, noise_mul=0.0)
    expected = F.cross_entropy(16.0 * (c - 0.2 * F.one_hot(y, 3)), y)
    assert torch.allclose(loss(c, y), expected, rtol=1e-6)
    # on balanced counts the cloud vanishes whatever noise_mul is, and GCL is LDAM with one margin for all classes
    balanced = [5, 5, 5]
    gcl, ldam = create("gcl", balanced, margin=0.2, scale=16.0, noise_mul=0.5), create("ldam", balanced, max_margin=0.2, scale=16.0)
    assert torch.allclose(gcl(c, y), ldam(c, y), rtol=1e-6)


@pytest.mark.parametrize("gamma", [0.0, 1.0])
def test_gradient_by_hand(gamma):
    """The noise is a constant: d/dc = scale * q_i (softmax(z_i) - onehot_i) / N, q_i the detached focal factor (1 when gamma 0)."""
    c, y = batch(n=8)
    c.requires_grad_(True)
    loss = create("gcl", COUNTS, margin=0.1, scale=20.0, noise_mul=0.5, gamma=gamma)
    loss.generator = torch.Generator().manual_seed(2)
    loss(c, y).backward()
    noise = draw_cloud_noise(c.shape, torch.Generator().manual_seed(2))
    z = 20.0 * clouded_logits(c.detach(), y, noise, loss.amplitudes, 0.5, 0.1)
    p = z.softmax(1)
    ce = -p.log().gather(1, y[:, None]).squeeze(1)
    q = (1 - torch.exp(-ce)) ** gamma
    expected = 20.0 * q[:, None] * (p - F.one_hot(y, 3)) / len(y)
    assert torch.allclose(c.grad, expected, atol=1e-6)


def test_seeded_draws_repeat_and_differ_across_seeds():
    c, y = batch()
    loss = create("gcl", COUNTS)
    values = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        values.append(loss(c, y).item())
    assert values[0] == values[1] and values[0] != values[2]
    # an injected generator leaves torch's global stream alone
    loss.generator = torch.Generator().manual_seed(0)
    torch.manual_seed(9)
    before = torch.get_rng_state()
    loss(c, y)
    assert torch.equal(torch.get_rng_state(), before)


def test_bad_hyper_parameters_are_one_line_errors():
    for key in ("margin", "scale", "noise_mul", "gamma"):
        with pytest.raises(ConfigError, match=key) as info:
            create("gcl", COUNTS, **{key: -1.0})
        assert "\n" not in str(info.value)


def test_focal_form_is_linear_in_the_sample_weight():
    """Stage 2's gamma > 0 form keeps the mixing identity the engine's mixup relies on (same noise per call)."""
    c, y = batch(n=10)
    _, y_b = batch(n=10, seed=1)
    loss = create("gcl", COUNTS, margin=0.1, scale=20.0, gamma=1.0)

    def call(targets, **kw):
        torch.manual_seed(4)
        return loss(c, targets, **kw)

    mixed = call(y, sample_weight=0.3) + call(y_b, sample_weight=0.7)
    assert torch.allclose(mixed, 0.3 * call(y) + 0.7 * call(y_b), rtol=1e-6)
