"""Label-aware smoothing (MiSLAS): the per-class smoothing of every official shape by hand, the loss value by
hand, against a numpy transcription of dvlab-research/MiSLAS methods.py LabelAwareSmoothing, and its gradient."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from longtail.core.errors import ConfigError
from longtail.losses import create
from longtail.losses.las import smoothing_per_class

# r = (n - n_K) / (n_1 - n_K) = 1, 0.5, 0: the largest, a middle and the smallest class
COUNTS = [9, 5, 1]
HEAD, TAIL = 0.3, 0.1
S = math.sqrt(0.5)  # sin(pi / 4) = cos(pi / 4)


@pytest.mark.parametrize("shape, power, expected", [
    ("concave", None, [0.3, 0.1 + 0.2 * S, 0.1]),       # tail + (head - tail) sin(pi r / 2)
    ("linear", None, [0.3, 0.2, 0.1]),                   # tail + (head - tail) r
    ("convex", None, [0.3, 0.3 - 0.2 * S, 0.1]),         # head + (head - tail) sin(3 pi / 2 + pi r / 2)
    ("exp", 2.0, [0.3, 0.1 + 0.2 * 0.25, 0.1]),          # tail + (head - tail) r^power
])
def test_smoothing_of_every_shape_by_hand(shape, power, expected):
    np.testing.assert_allclose(smoothing_per_class(COUNTS, HEAD, TAIL, shape, power), expected, rtol=1e-12)
    loss = create("las", COUNTS, smooth_head=HEAD, smooth_tail=TAIL, shape=shape, power=power)
    np.testing.assert_allclose(loss.smoothing.numpy(), expected, rtol=1e-6)


def test_loss_value_by_hand():
    """Two images, three classes: (1 - eps_y) (-log p_y) + eps_y mean_c(-log p_c), averaged over the batch."""
    loss = create("las", COUNTS, smooth_head=HEAD, smooth_tail=TAIL, shape="linear")  # eps = 0.3, 0.2, 0.1
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 1.0]])
    targets = torch.tensor([0, 2])
    terms = []
    for z, y, eps in ((logits[0], 0, 0.3), (logits[1], 2, 0.1)):
        logp = [float(v) - math.log(sum(math.exp(float(u)) for u in z)) for v in z]
        terms.append((1 - eps) * -logp[y] + eps * -sum(logp) / 3)
    assert float(loss(logits, targets)) == pytest.approx(sum(terms) / 2, rel=1e-6)


def official_las(logits: np.ndarray, targets: np.ndarray, counts: list[int], head: float, tail: float, shape: str, power: float | None) -> float:
    """dvlab-research/MiSLAS methods.py LabelAwareSmoothing, transcribed: its smoothing formulas as written
    (the convex one with its sin(1.5 pi + ...)), then confidence * nll + smoothing * mean(-logprobs), .mean()."""
    n = np.asarray(counts, dtype=np.float64)
    n_1, n_k = n.max(), n.min()
    if shape == "concave":
        smooth = tail + (head - tail) * np.sin((n - n_k) * np.pi / (2 * (n_1 - n_k)))
    elif shape == "linear":
        smooth = tail + (head - tail) * (n - n_k) / (n_1 - n_k)
    elif shape == "convex":
        smooth = head + (head - tail) * np.sin(1.5 * np.pi + (n - n_k) * np.pi / (2 * (n_1 - n_k)))
    else:
        smooth = tail + (head - tail) * np.power((n - n_k) / (n_1 - n_k), power)
    z = logits - logits.max(1, keepdims=True)
    logprobs = z - np.log(np.exp(z).sum(1, keepdims=True))
    eps = smooth[targets]
    nll = -logprobs[np.arange(len(targets)), targets]
    return float(((1 - eps) * nll + eps * -logprobs.mean(1)).mean())


@pytest.mark.parametrize("shape, power", [("concave", None), ("linear", None), ("convex", None), ("exp", 0.5)])
def test_matches_the_official_form(shape, power):
    counts = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]  # CIFAR-10-LT IR 100
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(64, 10, generator=g)
    targets = torch.randint(0, 10, (64,), generator=g)
    loss = create("las", counts, smooth_head=0.4, smooth_tail=0.1, shape=shape, power=power)
    expected = official_las(logits.double().numpy(), targets.numpy(), counts, 0.4, 0.1, shape, power)
    assert float(loss(logits, targets)) == pytest.approx(expected, rel=1e-5)


def test_gradient_is_softmax_minus_the_smoothed_target():
    """d loss / d z_i = (softmax(z_i) - q_i) / N with q_i = (1 - eps_y) onehot(y) + eps_y / C; and gradcheck in float64."""
    loss = create("las", COUNTS, smooth_head=HEAD, smooth_tail=TAIL)
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 3, generator=g, requires_grad=True)
    targets = torch.tensor([0, 1, 2, 2, 1, 0])
    loss(logits, targets).backward()
    eps = loss.smoothing[targets][:, None]
    q = (1 - eps) * torch.nn.functional.one_hot(targets, 3) + eps / 3
    assert torch.allclose(logits.grad, (torch.softmax(logits.detach(), 1) - q) / 6, atol=1e-6)
    z64 = logits.detach().double().requires_grad_(True)
    ones = torch.ones(6, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda z: loss.compute(z, targets, None, ones), (z64,))


def test_sample_and_class_weights_take_the_batch_mean():
    loss = create("las", COUNTS)
    logits, targets = torch.randn(4, 3, generator=torch.Generator().manual_seed(2)), torch.tensor([0, 1, 2, 0])
    per_sample = torch.stack([loss(logits[i:i + 1], targets[i:i + 1]) for i in range(4)])
    loss.set_class_weights([2.0, 1.0, 0.5])
    s = torch.tensor([1.0, 0.5, 0.25, 0.0])
    w = torch.tensor([2.0, 1.0, 0.5])[targets]
    assert float(loss(logits, targets, sample_weight=s)) == pytest.approx(float((s * w * per_sample).sum() / 4), rel=1e-6)


def test_equal_counts_are_plain_label_smoothing_at_smooth_head():
    las = create("las", [7, 7, 7], smooth_head=0.2, smooth_tail=0.0)
    ce = create("ce", [7, 7, 7], label_smoothing=0.2)
    logits, targets = torch.randn(5, 3, generator=torch.Generator().manual_seed(3)), torch.tensor([0, 1, 2, 1, 0])
    assert torch.allclose(las.smoothing, torch.full((3,), 0.2))
    assert torch.allclose(las(logits, targets), ce(logits, targets), rtol=1e-6)


def test_defaults_are_the_official_cifar10_imb100_stage2():
    """config/cifar10/cifar10_imb001_stage2_mislas.yaml: smooth_head 0.3, smooth_tail 0.0; methods.py shape='concave'."""
    loss = create("las", [5000, 50])
    assert (loss.smooth_head, loss.smooth_tail, loss.shape, loss.power) == (0.3, 0.0, "concave", None)
    assert loss.smoothing.tolist() == pytest.approx([0.3, 0.0])


@pytest.mark.parametrize("kwargs, key", [
    ({"shape": "cubic"}, "shape"),
    ({"shape": "exp"}, "power"),
    ({"shape": "exp", "power": -1.0}, "power"),
    ({"power": 2.0}, "power"),
    ({"smooth_head": 1.5}, "smooth_head"),
    ({"smooth_tail": -0.1}, "smooth_tail"),
])
def test_bad_settings_are_one_line_errors(kwargs, key):
    with pytest.raises(ConfigError, match=key) as info:
        create("las", COUNTS, **kwargs)
    assert "\n" not in str(info.value)
