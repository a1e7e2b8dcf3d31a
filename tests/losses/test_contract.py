"""Contract tests over the whole LOSSES registry: every loss honours the interface the engine relies on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from longtail.core.errors import ConfigError, LongtailError
from longtail.core.registry import LOSSES
from longtail.core.schema import Component
from longtail.losses import LongTailLoss, build_loss, create

COUNTS = [50, 20, 10, 5, 2]
C, N, D = len(COUNTS), 16, 8
NAMES = LOSSES.names()


def _batch(dtype: torch.dtype = torch.float32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = (2 * torch.randn(N, C, generator=g)).to(dtype).requires_grad_(True)
    targets = torch.randint(0, C, (N,), generator=g)
    features = torch.randn(N, D, generator=g).abs().to(dtype).requires_grad_(True)
    return logits, targets, features


def _experts(logits: torch.Tensor, num_experts: int = 3) -> torch.Tensor:
    """Per-expert logits whose mean over the experts is ``logits`` (a multi-expert model's aggregate), in its graph."""
    offsets = torch.randn(logits.shape[0], num_experts, logits.shape[1], generator=torch.Generator().manual_seed(7))
    return logits[:, None, :] + (offsets - offsets.mean(1, keepdim=True)).to(logits.dtype)


def _contrast(logits: torch.Tensor, views: int = 2, dim: int = 4) -> dict[str, torch.Tensor]:
    """Unit projections of ``views`` views of each image (N x V x d) and unit class centres (C x d), as a model's contrastive branch gives."""
    g = torch.Generator().manual_seed(11)
    projections = torch.nn.functional.normalize(torch.randn(logits.shape[0], views, dim, generator=g), dim=-1)
    centers = torch.nn.functional.normalize(torch.randn(logits.shape[1], dim, generator=g), dim=-1)
    return {"projections": projections.to(logits.dtype), "centers": centers.to(logits.dtype)}


def _call(loss: LongTailLoss, logits, targets, features, **kw) -> torch.Tensor:
    torch.manual_seed(123)  # EQL's Bernoulli and GCL's noise are drawn per call from torch's global RNG
    if loss.needs_experts:  # RIDE: the per-expert logits of a multi-expert model beside their aggregate
        kw["experts"] = _experts(logits)
    if getattr(loss, "needs_router", False):  # RIDE's router stage: N x (E - 1) router logits, here in the logits' graph
        kw["router"] = 0.5 * logits[:, :2] - 0.25
    if getattr(loss, "needs_contrast", False):  # BCL: the contrastive views' projections and the class centres
        kw.update(_contrast(logits))
    return loss(logits, targets, features if loss.needs_features else None, **kw)


def test_registry_lists_the_expected_losses_with_descriptions() -> None:
    expected = {"ce", "focal", "cb", "ldam", "balanced_softmax", "logit_adjusted", "eql", "ghmc", "low",
                "cce", "mwnl", "hml", "ib", "ib_focal", "cdb_ce", "cdb_focal", "lade", "gcl", "las", "ride", "ride_router", "sade", "bcl"}
    assert expected <= set(NAMES)
    for name, text in LOSSES.describe().items():
        assert text and "\n" not in text and len(text) < 130, name


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_finite_value_and_gradients(name: str, dtype: torch.dtype) -> None:
    loss = create(name, COUNTS)
    assert isinstance(loss, LongTailLoss)
    logits, targets, features = _batch(dtype)
    value = _call(loss, logits, targets, features)
    assert value.ndim == 0 and value.dtype == torch.float32
    assert torch.isfinite(value)
    value.backward()
    assert logits.grad is not None and logits.grad.dtype == dtype
    assert torch.isfinite(logits.grad.float()).all()
    assert logits.grad.abs().sum() > 0
    if loss.needs_features:
        assert torch.isfinite(features.grad.float()).all()


@pytest.mark.parametrize("name", NAMES)
def test_sample_weight_is_linear_in_the_numerator(name: str) -> None:
    loss = create(name, COUNTS)
    loss.set_class_weights(np.linspace(0.5, 2.0, C))
    logits, targets, features = _batch()
    _, targets_b, _ = _batch(seed=1)
    plain = _call(loss, logits, targets, features)
    assert torch.allclose(_call(loss, logits, targets, features, sample_weight=torch.ones(N)), plain, rtol=1e-6)
    assert torch.allclose(_call(loss, logits, targets, features, sample_weight=0.3), 0.3 * plain, rtol=1e-5)
    # mixup: L(z, ya, lam) + L(z, yb, 1 - lam) = lam L(z, ya) + (1 - lam) L(z, yb)
    lam = 0.7
    mixed = _call(loss, logits, targets, features, sample_weight=lam) + _call(loss, logits, targets_b, features, sample_weight=1 - lam)
    expected = lam * plain + (1 - lam) * _call(loss, logits, targets_b, features)
    assert torch.allclose(mixed, expected, rtol=1e-5)
    # per-sample weights add: the normaliser does not depend on sample_weight
    s1, s2 = torch.rand(N, generator=torch.Generator().manual_seed(2)), torch.rand(N, generator=torch.Generator().manual_seed(3))
    total = _call(loss, logits, targets, features, sample_weight=s1 + s2)
    parts = _call(loss, logits, targets, features, sample_weight=s1) + _call(loss, logits, targets, features, sample_weight=s2)
    assert torch.allclose(total, parts, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_class_weights_change_the_value_and_none_restores_it(name: str) -> None:
    loss = create(name, COUNTS)
    logits, targets, features = _batch()
    uniform = _call(loss, logits, targets, features)
    loss.set_class_weights(torch.tensor([0.2, 0.5, 1.0, 1.3, 2.0]))
    weighted = _call(loss, logits, targets, features)
    assert not torch.allclose(uniform, weighted, rtol=1e-4)
    loss.set_class_weights(None)
    assert torch.allclose(_call(loss, logits, targets, features), uniform)
    loss.set_class_weights(np.ones(C))
    assert torch.allclose(_call(loss, logits, targets, features), uniform)


@pytest.mark.parametrize("name", NAMES)
def test_hooks_exist_and_accept_engine_arguments(name: str) -> None:
    loss = create(name, COUNTS)
    loss.on_epoch_start(1, 10)
    loss.on_validation_end(np.linspace(0.1, 0.9, C))
    logits, targets, features = _batch()
    assert torch.isfinite(_call(loss, logits, targets, features))


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name: str) -> None:
    loss = create(name, COUNTS)
    loss.set_class_weights(np.linspace(0.5, 1.5, C))
    loss.on_validation_end(np.linspace(0.2, 0.9, C))
    fresh = create(name, COUNTS)
    fresh.load_state_dict(loss.state_dict())
    logits, targets, features = _batch()
    assert torch.allclose(_call(fresh, logits, targets, features), _call(loss, logits, targets, features))


def test_build_loss_from_config_component_and_kwarg_typos() -> None:
    loss = build_loss(Component(name="ldam", max_margin=0.3), COUNTS)
    assert float(loss.margins.max()) == pytest.approx(0.3)
    with pytest.raises(ConfigError, match="max_margn.*did you mean 'max_margin'"):
        build_loss(Component(name="ldam", max_margn=0.3), COUNTS)
    with pytest.raises(ConfigError, match="unknown loss 'focall'.*did you mean 'focal'"):
        build_loss(Component(name="focall"), COUNTS)
    with pytest.raises(ConfigError, match="class_counts"):
        build_loss(Component(name="ce", class_counts=[1, 2]), COUNTS)


def test_bad_inputs_are_one_line_errors() -> None:
    with pytest.raises(LongtailError, match="class 1 has no training samples"):
        create("ce", [10, 0, 3])
    loss = create("ce", COUNTS)
    with pytest.raises(LongtailError, match="logits must be N x 5"):
        loss(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(LongtailError, match="targets must be class indices"):
        loss(torch.zeros(2, C), torch.tensor([0, 7]))
    with pytest.raises(LongtailError, match="one value per class"):
        loss.set_class_weights([1.0, 2.0])
    with pytest.raises(LongtailError, match="non-negative"):
        loss.set_class_weights([1.0, -1.0, 1.0, 1.0, 1.0])
    with pytest.raises(LongtailError, match="sample_weight"):
        loss(torch.zeros(2, C), torch.tensor([0, 1]), sample_weight=torch.ones(3))
    with pytest.raises(LongtailError, match="needs penultimate features"):
        create("ib", COUNTS)(torch.zeros(2, C), torch.tensor([0, 1]))
    for name, kwargs, key in [
        ("mwnl", {"beta": 0.5}, "beta"),
        ("focal", {"variant": "softmax", "reduction": "enlarge"}, "reduction"),
        ("focal", {"variant": "tanh"}, "variant"),
        ("cb", {"beta": 1.0}, "beta"),
        ("cdb_ce", {"tau": "auto"}, "tau"),
        ("cdb_ce", {"dynamic_form": "egtea"}, "dynamic_form"),
        ("low", {"lamb": 0.0}, "lamb"),
        ("eql", {"gamma": 1.5}, "gamma"),
        ("gcl", {"noise_mul": -0.5}, "noise_mul"),
        ("las", {"shape": "cubic"}, "shape"),
        ("ride", {"temperature": 0.0}, "temperature"),
        ("ride", {"reweight_factor": 3.0}, "reweight_factor"),
        ("ride_router", {"pos_weight": -1.0}, "pos_weight"),
        ("sade", {"tau": -1.0}, "tau"),
        ("bcl", {"temperature": 0.0}, "temperature"),
    ]:
        with pytest.raises(ConfigError, match=key) as info:
            create(name, COUNTS, **kwargs)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", NAMES)
def test_saturated_logits_stay_finite(name: str) -> None:
    """Confident right and wrong predictions (|z| = 60) must not produce inf/NaN values or gradients."""
    loss = create(name, COUNTS)
    targets = torch.tensor([0, 1, 2, 3, 4, 0])
    logits = torch.full((6, C), -60.0)
    logits[torch.arange(3), targets[:3]] = 60.0  # three certain and right
    logits[torch.arange(3, 6), (targets[3:] + 1) % C] = 60.0  # three certain and wrong
    logits.requires_grad_(True)
    features = torch.ones(6, D)
    value = _call(loss, logits, targets, features)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()
