"""CDB-CE and CDB-Focal compute what the official CDB-loss code computes (issue 25).

The references below are the official formulas written out again in float64 torch, independently of
``longtail.losses``; each test compares values AND gradients on fixed small inputs.

Official code: hitachi-rd-cv/CDB-loss at commit 82b0119e189a50beb3ae581d401dd8585739c112.

- CDB weights (all three sub-projects): ``cdb = d^tau``, ``d = 1 - per-class validation accuracy``,
  normalised to sum C (``ImageNet-LT/loss/CDBSoftmaxLoss.py`` ``create_loss``;
  ``CIFAR-LT/losses/cdb_loss.py`` and ``EGTEA/losses/cdb_loss.py`` ``CDB_loss.__init__``).
- CDB-CE, CIFAR-LT / EGTEA (``CIFAR-LT/losses/cdb_loss.py``, ``EGTEA/losses/cdb_loss.py``):
  ``nn.CrossEntropyLoss(weight=cdb, reduction='none')``, then the mean over the batch in the training
  loop: ``sum_i cdb_{y_i} CE_i / N`` -> longtail ``reduction: batch_mean`` (the default).
- CDB-CE, ImageNet-LT (``ImageNet-LT/loss/CDBSoftmaxLoss.py``, ``focal_gamma: null``):
  ``nn.CrossEntropyLoss(weight=cdb)`` with its default reduction, PyTorch's weighted mean
  ``sum_i cdb_{y_i} CE_i / sum_i cdb_{y_i}`` (``run_networks.py`` ``batch_loss`` then takes
  ``torch.mean`` of that scalar) -> longtail ``reduction: weighted_mean``.
- CDB-Focal, ImageNet-LT only (``ImageNet-LT/loss/FocalLoss.py``, built by ``CDBSoftmaxLoss.py`` with
  ``alpha = cdb`` when ``focal_gamma`` is set): logits multiplied by ``+1`` at the target and ``-1``
  elsewhere, ``logpt = logsigmoid(.)``, ``pt = exp(logpt)`` taken from ``.data`` (no gradient),
  ``l_i = sum_c -(1 - pt_ic)^gamma logpt_ic``, times ``alpha_{y_i}``; ``run_networks.py``
  ``batch_loss`` averages over the batch (``torch.mean``) -> longtail ``cdb_focal`` ``form: sigmoid``.
  (As written the file's ``size_average`` / ``reduction`` names are undefined; the per-sample loss
  and the batch mean of ``run_networks.py`` are the evident intent.)
- longtail's ``cdb_focal`` ``form: softmax`` (default, not in the CDB code): ``cdb_{y_i} (1 - p_i)^gamma
  CE_i`` averaged over the batch, gradient through the modulator.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from longtail.catalog.check import load_config
from longtail.core import ranks
from longtail.core.errors import ConfigError
from longtail.losses import build_loss, create

from ..helpers import value_and_grad

ROOT = Path(__file__).resolve().parents[2]
IMAGENET_LT_RECIPE = ROOT / "configs/imagenet_lt/cdb_ce_resnet10.yaml"
BATCH_MEAN_RECIPES = ["cifar100_lt/cdb_ce.yaml", "cifar10_lt/cdb_ce.yaml", "egtea/cdb_ce.yaml", "ham10000/cdb_ce.yaml"]

SIZES = [2, 12]  # C = 2 and C >= 10
N = 9
TAU = 1.0  # the ImageNet-LT config's fixed tau (dynamic tau is tested in test_values.py)


# ------------------------------------------------------------------------- fixed inputs
def inputs(num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed float64 logits (N x C) and targets that hit every class when C <= N, head-heavy otherwise."""
    g = torch.Generator().manual_seed(1000 + num_classes)
    logits = 3.0 * torch.randn(N, num_classes, generator=g, dtype=torch.float64)
    if num_classes == 2:
        targets = torch.tensor([0, 0, 0, 0, 0, 1, 0, 1, 0])
    else:  # long-tailed batch: mostly the first (frequent) classes, a few rare ones
        targets = torch.tensor([0, 0, 1, 0, 2, 1, 5, 11, 0])
    return logits, targets


def val_accuracy(num_classes: int) -> np.ndarray:
    """Per-class validation accuracy: high for head classes, low for tail ones (all below 0.99)."""
    return np.linspace(0.9, 0.05, num_classes)


def official_cdb_weights(acc: np.ndarray, tau: float) -> torch.Tensor:
    """``create_loss``: ``(1 - acc)^tau`` normalised to sum C (``normalize: True``)."""
    d = 1.0 - acc
    w = d**tau
    return torch.as_tensor(w / w.sum() * len(w), dtype=torch.float64)


# ------------------------------------------------------------------ official references
def ref_ce_batch_mean(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """CIFAR-LT / EGTEA: CrossEntropyLoss(weight=w, reduction='none') then the batch mean."""
    return nn.CrossEntropyLoss(weight=w, reduction="none")(z, y).mean()


def ref_ce_weighted_mean(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """ImageNet-LT: CrossEntropyLoss(weight=w), written out: sum w_y CE / sum w_y."""
    logp = z - torch.logsumexp(z, dim=1, keepdim=True)
    ce = -logp[torch.arange(z.shape[0]), y]
    wy = w[y]
    out = (wy * ce).sum() / wy.sum()
    torch.testing.assert_close(out, nn.CrossEntropyLoss(weight=w)(z, y))  # the written-out form is PyTorch's
    return out


def ref_focal_sigmoid(z: torch.Tensor, y: torch.Tensor, alpha: torch.Tensor, gamma: float) -> torch.Tensor:
    """ImageNet-LT FocalLoss: +-1 sign flip, logsigmoid, detached pt, sum over classes, alpha_y, batch mean."""
    signs = -torch.ones_like(z)
    for i in range(z.shape[0]):
        signs[i, int(y[i])] = 1.0
    logpt = F.logsigmoid(z * signs)
    pt = logpt.detach().exp()
    per_sample = (-((1.0 - pt) ** gamma) * logpt).sum(1)
    return (per_sample * alpha[y]).mean()


def ref_focal_softmax(z: torch.Tensor, y: torch.Tensor, alpha: torch.Tensor, gamma: float) -> torch.Tensor:
    """longtail's softmax form: alpha_y (1 - p_y)^gamma (-log p_y), batch mean, no detach."""
    logp = torch.log_softmax(z, dim=1)[torch.arange(z.shape[0]), y]
    return (alpha[y] * (1.0 - logp.exp()) ** gamma * (-logp)).mean()


def assert_matches(loss, ref, logits: torch.Tensor) -> None:
    value, grad = value_and_grad(loss, logits)
    ref_value, ref_grad = value_and_grad(ref, logits)
    assert value == pytest.approx(ref_value, rel=2e-6, abs=1e-7)
    torch.testing.assert_close(grad, ref_grad, rtol=2e-5, atol=1e-7)


# ------------------------------------------------------------------------------ CDB-CE
@pytest.mark.parametrize("num_classes", SIZES)
@pytest.mark.parametrize("weighted", [False, True], ids=["before_validation", "after_validation"])
@pytest.mark.parametrize(
    ("reduction", "ref"),
    [("batch_mean", ref_ce_batch_mean), ("weighted_mean", ref_ce_weighted_mean)],
    ids=["batch_mean", "weighted_mean"],
)
def test_cdb_ce_matches_the_official_reduction(num_classes: int, weighted: bool, reduction: str, ref) -> None:
    z, y = inputs(num_classes)
    counts = list(range(10 * num_classes, 0, -10))
    loss = create("cdb_ce", counts, tau=TAU, reduction=reduction)
    w = torch.ones(num_classes, dtype=torch.float64)
    if weighted:
        acc = val_accuracy(num_classes)
        loss.on_validation_end(acc)
        w = official_cdb_weights(acc, TAU)
        torch.testing.assert_close(loss.cdb_weights.double(), w, rtol=1e-6, atol=0)
    assert_matches(lambda t: loss(t, y), lambda t: ref(t, y, w), z)


@pytest.mark.parametrize("num_classes", SIZES)
def test_the_two_reductions_differ_by_the_batch_mean_weight(num_classes: int) -> None:
    """batch_mean = weighted_mean * mean_i cdb_{y_i}: below 1 on a head-heavy batch (the hidden lr cut)."""
    z, y = inputs(num_classes)
    acc = val_accuracy(num_classes)
    losses = {r: create("cdb_ce", [5] * num_classes, tau=TAU, reduction=r) for r in ("batch_mean", "weighted_mean")}
    for loss in losses.values():
        loss.on_validation_end(acc)
    factor = float(official_cdb_weights(acc, TAU)[y].mean())
    assert factor < 1.0
    v_b, g_b = value_and_grad(lambda t: losses["batch_mean"](t, y), z)
    v_w, g_w = value_and_grad(lambda t: losses["weighted_mean"](t, y), z)
    assert v_b == pytest.approx(factor * v_w, rel=2e-6)
    torch.testing.assert_close(g_b, factor * g_w, rtol=2e-5, atol=1e-7)


def test_weighted_mean_includes_schedule_weights_and_sample_weights() -> None:
    """With a weight schedule the per-sample weight is w_{y_i} cdb_{y_i}, in numerator and denominator."""
    z, y = inputs(12)
    acc = val_accuracy(12)
    loss = create("cdb_ce", [5] * 12, tau=TAU, reduction="weighted_mean")
    loss.on_validation_end(acc)
    schedule = torch.linspace(0.5, 2.0, 12, dtype=torch.float64)
    loss.set_class_weights(schedule)
    combined = official_cdb_weights(acc, TAU) * schedule
    assert_matches(lambda t: loss(t, y), lambda t: ref_ce_weighted_mean(t, y, combined), z)
    # label mixing: sample weights in the numerator only, so lam * L(ya) + (1 - lam) * L(yb) splits exactly
    lam = 0.3
    yb = y.flip(0)
    mixed = loss(z, y, sample_weight=lam) + loss(z, yb, sample_weight=1 - lam)
    assert float(mixed) == pytest.approx(lam * float(loss(z, y)) + (1 - lam) * float(loss(z, yb)), rel=1e-6)


def test_weighted_mean_uses_the_global_batch_weight_sum(monkeypatch: pytest.MonkeyPatch) -> None:
    """The denominator goes through the base class's rank-aware mean (as if another rank held twice the weight)."""
    z, y = inputs(12)
    weighted = create("cdb_ce", [5] * 12, tau=TAU, reduction="weighted_mean")
    batch = create("cdb_ce", [5] * 12, tau=TAU)
    before_w, before_b = float(weighted(z, y)), float(batch(z, y))
    monkeypatch.setattr(ranks, "mean_over_ranks", lambda v: 2.0 * v)
    assert float(weighted(z, y)) == pytest.approx(before_w / 2.0, rel=1e-6)
    assert float(batch(z, y)) == before_b


def test_cdb_ce_default_is_the_cifar_egtea_batch_mean_bit_for_bit() -> None:
    z, y = inputs(12)
    acc = val_accuracy(12)
    default, explicit = create("cdb_ce", [5] * 12, tau=TAU), create("cdb_ce", [5] * 12, tau=TAU, reduction="batch_mean")
    for loss in (default, explicit):
        loss.on_validation_end(acc)
    assert default.reduction == "batch_mean"
    ce = F.cross_entropy(z.float(), y, reduction="none")
    assert torch.equal(default(z, y), (default.class_weights * default.cdb_weights)[y].mul(ce).sum() / N)
    assert torch.equal(default(z, y), explicit(z, y))


# --------------------------------------------------------------------------- CDB-Focal
@pytest.mark.parametrize("num_classes", SIZES)
@pytest.mark.parametrize("weighted", [False, True], ids=["before_validation", "after_validation"])
@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0])
@pytest.mark.parametrize(("form", "ref"), [("sigmoid", ref_focal_sigmoid), ("softmax", ref_focal_softmax)], ids=["sigmoid", "softmax"])
def test_cdb_focal_forms(num_classes: int, weighted: bool, gamma: float, form: str, ref) -> None:
    z, y = inputs(num_classes)
    loss = create("cdb_focal", [5] * num_classes, tau=TAU, gamma=gamma, form=form)
    alpha = torch.ones(num_classes, dtype=torch.float64)
    if weighted:
        acc = val_accuracy(num_classes)
        loss.on_validation_end(acc)
        alpha = official_cdb_weights(acc, TAU)
    assert_matches(lambda t: loss(t, y), lambda t: ref(t, y, alpha, gamma), z)


def test_sigmoid_form_detaches_the_modulator() -> None:
    """The official gradient is alpha_y * (1 - pt)^gamma * d(-logpt): differs from the non-detached focal."""
    z, y = inputs(12)
    loss = create("cdb_focal", [5] * 12, tau=TAU, gamma=2.0, form="sigmoid")

    def attached(t: torch.Tensor) -> torch.Tensor:
        s = torch.where(F.one_hot(y, 12).bool(), 1.0, -1.0).double()
        logpt = F.logsigmoid(s * t)
        return (-((1.0 - logpt.exp()) ** 2) * logpt).sum(1).mean()

    _, g = value_and_grad(lambda t: loss(t, y), z)
    v_att, g_att = value_and_grad(attached, z)
    assert float(loss(z, y)) == pytest.approx(v_att, rel=2e-6)  # same value
    assert not torch.allclose(g, g_att, rtol=1e-3)  # different gradient


def test_cdb_focal_default_is_the_softmax_form_bit_for_bit() -> None:
    z, y = inputs(12)
    default, explicit = create("cdb_focal", [5] * 12, tau=TAU, gamma=1.5), create("cdb_focal", [5] * 12, tau=TAU, gamma=1.5, form="softmax")
    for loss in (default, explicit):
        loss.on_validation_end(val_accuracy(12))
    assert default.form == "softmax" and default.reduction == "batch_mean"
    ce = F.cross_entropy(z.float(), y, reduction="none")
    expected = ((default.class_weights * default.cdb_weights)[y] * (1.0 - torch.exp(-ce)).clamp_min(1e-12).pow(1.5) * ce).sum() / N
    assert torch.equal(default(z, y), expected)
    assert torch.equal(default(z, y), explicit(z, y))


# ----------------------------------------------------------------------- options, recipes
def test_option_values_are_checked() -> None:
    with pytest.raises(ConfigError, match="reduction"):
        create("cdb_ce", [5, 3], reduction="mean")
    with pytest.raises(ConfigError, match="form"):
        create("cdb_focal", [5, 3], form="ova")
    with pytest.raises(ConfigError, match="reduction"):  # the official focal is a batch mean only
        create("cdb_focal", [5, 3], reduction="weighted_mean")


def test_imagenet_lt_recipe_runs_the_weighted_mean() -> None:
    cfg = load_config(IMAGENET_LT_RECIPE)
    assert cfg.loss.name == "cdb_ce" and cfg.loss.kwargs.get("reduction") == "weighted_mean"
    loss = build_loss(cfg.loss, [20] * cfg.data.source.kwargs["num_classes"])
    assert loss.reduction == "weighted_mean"


@pytest.mark.parametrize("recipe", BATCH_MEAN_RECIPES)
def test_cifar_egtea_recipes_run_the_batch_mean(recipe: str) -> None:
    cfg = load_config(ROOT / "configs" / recipe)
    assert cfg.loss.name == "cdb_ce"
    assert build_loss(cfg.loss, [20, 10, 5]).reduction == "batch_mean"


def test_an_override_switches_the_reduction() -> None:
    cfg = load_config(IMAGENET_LT_RECIPE, ["loss.reduction=batch_mean"])
    assert cfg.loss.kwargs["reduction"] == "batch_mean"
    with pytest.raises(ConfigError, match="reduction"):
        load_config(IMAGENET_LT_RECIPE, ["loss.reduction=sum"])
