"""Heads and the Classifier's decoupled-training methods (freeze, reset, swap, fractional freezing)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics.pairwise import cosine_similarity

from longtail.core.errors import ConfigError, DataError
from longtail.core.schema import ModelConfig
from longtail.models import Classifier, CosineHead, LinearHead, LWSHead, build_model, tau_normalize
from longtail.models.small_cnn import small_cnn

COUNTS = [50, 20, 5, 1]


def _model(**kw) -> Classifier:
    torch.manual_seed(0)
    return Classifier(small_cnn(widths=(4, 8), convs_per_stage=1), num_classes=4, class_counts=COUNTS, **kw)


# ------------------------------------------------------------------------------------ heads
def test_log_prior_bias_is_log_class_frequency():
    head = LinearHead(8, 4, bias="log_prior", class_counts=COUNTS)
    expected = np.log(np.array(COUNTS) / sum(COUNTS))
    np.testing.assert_allclose(head.bias.detach().numpy(), expected, rtol=1e-6)
    # with zero input the softmax is the training class distribution
    probs = torch.softmax(head(torch.zeros(1, 8)), dim=1)[0].detach().numpy()
    np.testing.assert_allclose(probs, np.array(COUNTS) / sum(COUNTS), rtol=1e-5)


def test_log_prior_bias_rejects_empty_class_and_missing_counts():
    with pytest.raises(DataError, match="class 1 has no training images"):
        LinearHead(8, 3, bias="log_prior", class_counts=[3, 0, 2])
    with pytest.raises(ConfigError, match="needs the training class counts"):
        LinearHead(8, 3, bias="log_prior")
    assert LinearHead(8, 3, bias="none").bias is None
    assert torch.equal(LinearHead(8, 3).bias, torch.zeros(3))


def test_cosine_head_is_cosine_similarity():
    torch.manual_seed(0)
    head = CosineHead(6, 5)
    x = torch.randn(7, 6) * 10
    out = head(x).detach().numpy()
    assert out.min() >= -1 - 1e-6 and out.max() <= 1 + 1e-6
    reference = cosine_similarity(x.numpy(), head.weight.detach().numpy())
    np.testing.assert_allclose(out, reference, atol=1e-5)


def test_tau_normalize():
    w = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    assert torch.equal(tau_normalize(w, 0.0), w)
    np.testing.assert_allclose(tau_normalize(w, 1.0).norm(dim=1).numpy(), [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(tau_normalize(w, 0.5).numpy(), [[3 / math.sqrt(5), 4 / math.sqrt(5)], [0.0, 2 / math.sqrt(2)]], rtol=1e-6)


def test_lws_starts_as_the_linear_head_and_learns_only_scales():
    torch.manual_seed(0)
    linear = LinearHead(6, 4, bias="log_prior", class_counts=COUNTS)
    lws = LWSHead(linear)
    x = torch.randn(5, 6)
    assert torch.allclose(lws(x), linear(x))
    assert [n for n, _ in lws.named_parameters()] == ["scales"]
    opt = torch.optim.SGD(lws.parameters(), lr=0.5)
    torch.nn.functional.cross_entropy(lws(x), torch.tensor([0, 1, 2, 3, 3])).backward()
    opt.step()
    assert torch.equal(lws.weight, linear.weight) and not torch.equal(lws.scales, torch.ones(4))
    # folding the scales back gives the same logits from a plain linear head
    assert torch.allclose(lws.to_linear()(x), lws(x), atol=1e-6)


# ------------------------------------------------------------------------------- classifier
def test_forward_returns_features_before_dropout():
    model = _model(dropout=0.5).eval()
    x = torch.randn(3, 3, 8, 8)
    logits, features = model(x, return_features=True)
    assert torch.equal(features, model.backbone(x))
    assert torch.allclose(logits, model.head(features))
    model.train()
    torch.manual_seed(1)
    dropped = model(x)
    assert not torch.allclose(dropped, model.head(model.backbone(x)))  # dropout active in training


def test_freeze_backbone_keeps_weights_and_bn_statistics():
    model = _model()
    model.freeze_backbone()
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = model.head.weight.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    model.train()
    assert not model.backbone.training and model.head.training
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 8, 8)), torch.tensor([0, 1, 2, 3])).backward()
        opt.step()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(torch.equal(v, before[k]) for k, v in model.backbone.state_dict().items())  # incl. running stats
    assert not torch.equal(model.head.weight, head_before)
    model.freeze_backbone(False)
    model.train()
    assert model.backbone.training and all(p.requires_grad for p in model.backbone.parameters())


def test_reset_head_changes_only_the_head():
    model = _model(head_bias="log_prior")
    with torch.no_grad():
        model.head.bias.zero_()
    backbone = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    weight = model.head.weight.detach().clone()
    model.reset_head()
    assert all(torch.equal(v, backbone[k]) for k, v in model.backbone.state_dict().items())
    assert not torch.equal(model.head.weight, weight)
    np.testing.assert_allclose(model.head.bias.detach().numpy(), np.log(np.array(COUNTS) / sum(COUNTS)), rtol=1e-6)


def test_set_head_swaps_kind_and_keeps_device_and_dtype():
    model = _model().double().eval()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    linear_logits = model(x)
    model.set_head("lws")
    assert isinstance(model.head, LWSHead) and model.head.weight.dtype == torch.float64
    assert torch.allclose(model(x), linear_logits)  # LWS keeps the trained linear weights
    model.set_head("linear")
    assert isinstance(model.head, LinearHead) and torch.allclose(model(x), linear_logits)
    model.set_head("cosine")
    assert isinstance(model.head, CosineHead) and model.head.weight.dtype == torch.float64
    with pytest.raises(ConfigError, match="rescales a trained linear head"):
        model.set_head("lws")


def test_freeze_fraction_freezes_the_first_tensors_like_hmloss():
    model = _model()
    params = list(model.parameters())
    frozen = model.freeze_fraction(0.32)
    assert frozen == math.floor(0.68 * len(params))
    assert [p.requires_grad for p in params] == [i >= frozen for i in range(len(params))]
    assert params[-1].requires_grad  # the head is always in the trained part
    with pytest.raises(ConfigError, match=r"did you mean 0\.32"):
        model.freeze_fraction(32)
    assert model.freeze_fraction(1.0) == 0 and all(p.requires_grad for p in params)


def test_build_model_heads_from_config():
    cosine = build_model(ModelConfig(name="small_cnn", head="cosine"), 4, 1)
    assert isinstance(cosine.head, CosineHead)
    lws = build_model(ModelConfig(name="small_cnn", head="lws"), 4, 1)
    assert isinstance(lws.head, LWSHead)
    prior = build_model(ModelConfig(name="small_cnn", head_bias="log_prior"), 4, 1, class_counts=COUNTS)
    np.testing.assert_allclose(prior.head.bias.detach().numpy(), np.log(np.array(COUNTS) / 76), rtol=1e-6)
    with pytest.raises(ConfigError, match="cosine has no bias"):
        build_model(ModelConfig(name="small_cnn", head="cosine", head_bias="log_prior"), 4, 1, class_counts=COUNTS)
    with pytest.raises(DataError, match="class_counts has 3 entries"):
        build_model(ModelConfig(name="small_cnn"), 4, 1, class_counts=[1, 2, 3])
    with pytest.raises(ConfigError, match="did you mean 'small_cnn'"):
        build_model(ModelConfig(name="smal_cnn"), 4, 1)
    with pytest.raises(ConfigError, match="'widht' is not a parameter"):
        build_model(ModelConfig(name="small_cnn", widht=3), 4, 1)
