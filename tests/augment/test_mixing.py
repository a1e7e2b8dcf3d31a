"""Mixup, CutMix, Remix: mixed images, label weights, and the mixed loss."""

from __future__ import annotations

import pytest
import torch

from longtail.augment import CutMix, Mixup, Remix, remix_label_weights
from longtail.core.errors import ConfigError, DataError
from longtail.core.registry import METHODS


def constant_batch(n: int = 6, c: int = 2, h: int = 8, w: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Image i is filled with the value i, and labelled i, so y_b reveals the permutation."""
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, c, h, w).clone()
    return x, torch.arange(n)


def test_mixup_mixes_images_with_one_lambda():
    torch.manual_seed(0)
    x, y = constant_batch()
    mixed, y_a, y_b, lam = METHODS.create("mixup", alpha=0.4, class_counts=[1] * 6)(x, y)
    assert mixed.shape == x.shape and lam.shape == (6,) and lam.dtype == x.dtype
    assert torch.equal(y_a, y) and sorted(y_b.tolist()) == y.tolist()
    assert torch.all(lam == lam[0]) and 0 <= float(lam[0]) <= 1
    expected = lam[0] * x + (1 - lam[0]) * x[y_b]
    torch.testing.assert_close(mixed, expected)


def test_mixup_lambda_follows_beta_alpha_alpha():
    torch.manual_seed(1)
    mix = Mixup(alpha=0.5)
    x, y = constant_batch(2)
    lams = torch.stack([mix(x, y)[3][0] for _ in range(3000)]).double()
    # Beta(0.5, 0.5): mean 1/2, variance 1 / (4 * 2) = 0.125
    assert abs(lams.mean() - 0.5) < 0.03 and abs(lams.var() - 0.125) < 0.01


def test_cutmix_lambda_is_one_minus_the_pasted_area():
    torch.manual_seed(2)
    cut = CutMix(alpha=1.0)
    n, h, w = 6, 8, 10
    seen_partial = False
    for _ in range(30):
        x, y = constant_batch(n, h=h, w=w)
        mixed, y_a, y_b, lam = cut(x, y)
        assert torch.all(lam == lam[0])
        for i in range(n):
            if y_b[i] == i:
                continue  # pasted onto itself: nothing visible
            pasted = (mixed[i, 0] == float(y_b[i])).float().mean()
            assert float(pasted) == pytest.approx(1 - float(lam[i]), abs=1e-6)
            assert torch.all((mixed[i] == i) | (mixed[i] == float(y_b[i])))
            seen_partial |= 0 < float(pasted) < 1
    assert seen_partial


def test_remix_label_weight_rules():
    lam = torch.tensor([0.3, 0.3, 0.8, 0.8, 0.3, 0.6, 0.45])
    n_a = torch.tensor([300, 100, 10, 10, 200, 30, 90])
    n_b = torch.tensor([100, 100, 30, 40, 100, 10, 30])
    out = remix_label_weights(lam.double(), n_a, n_b, kappa=3.0, tau=0.5)
    # 1: ratio 3 >= kappa and lam < tau -> 0            2: ratio 1 -> lam
    # 3: ratio 1/3 <= 1/kappa and 1-lam = .2 < tau -> 1   4: ratio 1/4, 1-lam .2 -> 1
    # 5: ratio 2 < kappa -> lam                           6: ratio 3 but lam .6 >= tau -> lam
    # 7: ratio 3, lam .45 < tau -> 0
    torch.testing.assert_close(out.float(), torch.tensor([0.0, 0.3, 1.0, 1.0, 0.3, 0.6, 0.0]))


def test_remix_mixes_images_like_mixup_and_reweights_labels():
    counts = [100, 50, 30, 10, 5, 3, 2, 1]
    torch.manual_seed(3)
    remix = METHODS.create("remix", alpha=1.0, class_counts=counts)
    rules_seen = set()
    for _ in range(40):
        x, y = constant_batch(8)  # image i has value i and class i: y_b is the permutation
        mixed, y_a, y_b, label_lam = remix(x, y)
        assert torch.equal(y_a, y) and label_lam.shape == (8,)
        moved = (y_b != y).nonzero(as_tuple=True)[0]
        if len(moved) == 0:
            continue
        i = int(moved[0])
        lam = float((mixed[i, 0, 0, 0] - y_b[i]) / (i - y_b[i]))  # image weight of x_a, shared by the batch
        torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[y_b])
        for k in range(8):
            ratio = counts[k] / counts[int(y_b[k])]
            if ratio >= 3 and lam < 0.5:
                expected, rule = 0.0, "to b"
            elif ratio <= 1 / 3 and 1 - lam < 0.5:
                expected, rule = 1.0, "to a"
            else:
                expected, rule = lam, "mixup"
            assert float(label_lam[k]) == pytest.approx(expected, abs=1e-6)
            rules_seen.add(rule)
    assert rules_seen == {"to a", "to b", "mixup"}
    with pytest.raises(ConfigError, match="class_counts"):
        Remix(alpha=1.0)


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(ConfigError, match="alpha must be > 0"):
        Mixup(alpha=0)
    with pytest.raises(DataError, match="float image batch"):
        CutMix()(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.tensor([0, 1]))
    with pytest.raises(DataError, match="one integer label per image"):
        Mixup()(torch.zeros(2, 3, 4, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(DataError, match="labels must be in"):
        Remix(class_counts=[3, 1])(torch.zeros(2, 3, 4, 4), torch.tensor([0, 2]))
