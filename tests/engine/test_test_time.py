"""SADE's test-time self-supervised aggregation (engine/test_time.py) and the expert weights it sets
(models/experts.py ExpertHeads.set_expert_weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from longtail.core.errors import ConfigError, LongtailError
from longtail.core.schema import Component, ModelConfig
from longtail.data import build_pipeline
from longtail.data.dataset import TensorImageDataset
from longtail.engine.test_time import (AggregationSettings, aggregate, expert_agreements, fit_expert_weights, predict_experts,
                                       view_agreement)
from longtail.models import ExpertHeads, ExpertOutput, build_model

C = 4


def numpy_agreement(first: np.ndarray, second: np.ndarray, raw: np.ndarray) -> float:
    w = np.exp(raw) / np.exp(raw).sum()

    def softmax(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    p1, p2 = softmax(np.einsum("e,nec->nc", w, first)), softmax(np.einsum("e,nec->nc", w, second))
    cos = (p1 * p2).sum(1) / np.maximum(np.linalg.norm(p1, axis=1) * np.linalg.norm(p2, axis=1), 1e-6)
    return float(cos.mean())


def test_view_agreement_is_the_mean_cosine_of_the_two_softmaxes():
    g = torch.Generator().manual_seed(0)
    first, second = torch.randn(6, 3, C, generator=g), torch.randn(6, 3, C, generator=g)
    raw = torch.tensor([0.2, -0.1, 0.5])
    assert view_agreement(first, second, raw).item() == pytest.approx(numpy_agreement(first.numpy(), second.numpy(), raw.numpy()), rel=1e-5)


class FlipSensitiveExperts(nn.Module):
    """Three experts on 1 x 4 x 4 images: expert 0 reads the image mean (a flip leaves it as it is), experts
    1 and 2 the left column minus the right one and the first row's left corner minus its right one (a
    flip negates both): only expert 0 agrees across flipped views."""

    def __init__(self) -> None:
        super().__init__()
        self.head = ExpertHeads("linear", 3, 1, C)

    def forward(self, x, return_features=False, return_experts=False):
        mean = x.mean((1, 2, 3))
        columns = x[..., 0].mean((1, 2)) - x[..., -1].mean((1, 2))
        corners = x[:, 0, 0, 0] - x[:, 0, 0, -1]
        scales = torch.arange(C, dtype=torch.float32)
        experts = torch.stack([8 * s[:, None] * scales for s in (mean, columns, corners)], dim=1)
        logits = self.head.aggregate(experts)
        if return_experts:
            return ExpertOutput(logits, x.flatten(1), experts)
        return (logits, x.flatten(1)) if return_features else logits


def flip_views():
    return build_pipeline([Component(name="hflip", p=0.5)], [0.0], [1.0], train=True)


def images(n: int = 64, seed: int = 0) -> TensorImageDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 1, 4, 4), generator=g, dtype=torch.uint8)
    return TensorImageDataset(x, np.zeros(n, dtype=np.int64), [str(c) for c in range(C)], ids=[str(i) for i in range(n)])


def test_the_view_invariant_expert_wins_and_the_fit_is_deterministic():
    model, data = FlipSensitiveExperts(), images()
    settings = AggregationSettings(epochs=20, lr=0.5, batch_size=16, min_weight=0.0)
    fit = fit_expert_weights(model, data, flip_views(), torch.device("cpu"), settings, seed=1)
    assert fit.weights.shape == (3,) and fit.weights.sum() == pytest.approx(1.0)
    assert fit.weights[0] > 0.6 > max(fit.weights[1:]) and fit.epochs == 20
    assert fit.history[0][0] < fit.history[-1][0]  # it grows epoch by epoch
    again = fit_expert_weights(model, data, flip_views(), torch.device("cpu"), settings, seed=1)
    assert np.array_equal(again.weights, fit.weights)


def test_expert_agreements_read_the_objective_at_each_expert_alone():
    model, data = FlipSensitiveExperts(), images()
    torch.manual_seed(5)
    state = torch.get_rng_state()
    agreement = expert_agreements(model, data, flip_views(), torch.device("cpu"), batch_size=16, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert agreement.shape == (3,) and agreement[0] == pytest.approx(1.0, abs=1e-6)  # a flip leaves the mean as it is
    assert agreement[1] < 0.99 and agreement[2] < 0.99  # a flip negates the others' logits in about half the pairs
    assert np.array_equal(agreement, expert_agreements(model, data, flip_views(), torch.device("cpu"), batch_size=16, seed=3))
    # views that never change an image: every expert agrees with itself
    same = build_pipeline([Component(name="hflip", p=0.0)], [0.0], [1.0], train=True)
    assert expert_agreements(model, data, same, torch.device("cpu"), batch_size=16) == pytest.approx(np.ones(3), abs=1e-6)
    # a pair that flipped differently scores cos(softmax(a), softmax(-a)): the mean over images lies between that and 1
    x = data.images.float().div(255.0)
    a = torch.stack([8 * (x[..., 0].mean((1, 2)) - x[..., -1].mean((1, 2)))[:, None] * torch.arange(C, dtype=torch.float32)], 0)[0]
    worst = torch.nn.functional.cosine_similarity(torch.softmax(a, 1), torch.softmax(-a, 1), dim=1, eps=1e-6).mean().item()
    assert worst < agreement[1] < 1.0


def test_stops_once_a_weight_falls_below_min_weight_and_leaves_the_callers_rng_alone():
    model, data = FlipSensitiveExperts(), images()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    fit = fit_expert_weights(model, data, flip_views(), torch.device("cpu"), AggregationSettings(epochs=50, lr=2.0, batch_size=16), seed=0)
    assert torch.equal(torch.get_rng_state(), state)
    assert fit.epochs < 50 and (np.round(fit.weights, 2) < 0.05).any()
    assert not (np.round(np.asarray(fit.history[:-1]), 2) < 0.05).any()  # it ran until the first epoch that crossed


def test_the_weights_change_the_aggregate_only_and_are_no_part_of_the_checkpoint():
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="ride_resnet32", num_experts=3, blocks=1, head="cosine"), C, 3, [40, 20, 10, 5]).eval()
    keys = set(model.state_dict())
    x = torch.randn(5, 3, 8, 8)
    out = model(x, return_experts=True)
    model.head.set_expert_weights([0.5, 0.3, 0.2])
    weighted = model(x, return_experts=True)
    assert torch.equal(weighted.experts, out.experts)
    assert torch.allclose(weighted.logits, 0.5 * out.experts[:, 0] + 0.3 * out.experts[:, 1] + 0.2 * out.experts[:, 2], atol=1e-5)
    assert set(model.state_dict()) == keys
    model.head.set_expert_weights(None)
    assert torch.equal(model(x), out.logits)
    for bad in ([0.5, 0.5], [0.7, 0.7, -0.4], [0.2, 0.2, 0.2]):
        with pytest.raises(LongtailError, match="non-negative values summing to 1"):
            model.head.set_expert_weights(bad)


def test_predict_experts_and_aggregate_match_the_model():
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="ride_resnet32", num_experts=3, blocks=1, head="cosine"), C, 1, [40, 20, 10, 5]).eval()
    data = images(10)
    pipeline = build_pipeline([], [0.5], [0.25], train=False)
    experts, targets = predict_experts(model, data, pipeline, torch.device("cpu"), batch_size=4)
    assert experts.shape == (10, 3, C) and targets.shape == (10,)
    with torch.no_grad():
        direct = model(pipeline.batch(data.images), return_experts=True)
    assert np.allclose(experts, direct.experts.numpy(), atol=1e-5)
    assert np.allclose(aggregate(experts), direct.logits.numpy(), atol=1e-5)
    assert np.allclose(aggregate(experts, [1.0, 0.0, 0.0]), experts[:, 0])


def test_one_line_errors():
    single = build_model(ModelConfig(name="small_cnn"), C, 1, [4, 3, 2, 1])
    with pytest.raises(LongtailError, match="single head.*ride_resnet32"):
        fit_expert_weights(single, images(4), flip_views(), torch.device("cpu"))
    per_sample = build_pipeline([Component(name="gray_world")], [0.0], [1.0], train=True)
    assert per_sample.sample is not None
    with pytest.raises(ConfigError, match="batched"):
        fit_expert_weights(FlipSensitiveExperts(), images(4), per_sample, torch.device("cpu"))
    with pytest.raises(ConfigError, match="epochs"):
        AggregationSettings(epochs=0)
    with pytest.raises(ConfigError, match="min_weight"):
        AggregationSettings(min_weight=1.5)
