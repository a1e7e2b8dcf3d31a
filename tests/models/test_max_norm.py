"""Weight balancing's MaxNorm projection of the head's class rows (models/heads.py), by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from longtail.models.heads import max_norm_project, max_norm_threshold


def test_projection_is_w_times_min_1_t_over_norm_per_row():
    w = torch.randn(7, 5, generator=torch.Generator().manual_seed(0)) * torch.tensor([0.1, 0.5, 1.0, 2.0, 3.0, 0.05, 4.0])[:, None]
    t = 1.2
    out = max_norm_project(w, t)
    ref = np.stack([row * min(1.0, t / np.linalg.norm(row)) for row in w.double().numpy()])
    np.testing.assert_allclose(out.double().numpy(), ref, rtol=1e-6, atol=1e-7)
    norms = out.norm(dim=1)
    assert (norms <= t * (1 + 1e-6)).all()
    inside = w.norm(dim=1) <= t
    assert inside.any() and (~inside).any()
    assert torch.equal(out[inside], w[inside])  # rows within the ball are left exactly as they are
    assert torch.allclose(norms[~inside], torch.full_like(norms[~inside], t))  # the others land on the sphere


def test_hand_projection():
    w = torch.tensor([[0.3, 0.4], [3.0, 4.0], [0.0, 0.0]])  # norms 0.5, 5, 0
    assert torch.equal(max_norm_project(w, 1.0), torch.tensor([[0.3, 0.4], [0.6, 0.8], [0.0, 0.0]]))


def test_threshold_relative_to_the_row_norm_range_or_absolute():
    w = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])  # row norms 1, 2, 5
    assert max_norm_threshold(w, 0.1) == pytest.approx(1.0 + 0.1 * (5.0 - 1.0))  # min + thresh (max - min)
    assert max_norm_threshold(w, 1.0) == pytest.approx(5.0)
    assert max_norm_threshold(w, 0.7, relative=False) == 0.7
