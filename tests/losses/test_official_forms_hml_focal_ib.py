"""HML, focal and IB-focal compute what their official code computes once class weights are set (issue 25).

Each reference below is the official formula written out again in float64 torch, independently of
``longtail.losses``; each test compares values AND gradients (w.r.t. the logits) on fixed small
inputs, with and without class weights, for C = 2 and C = 12.

Official code (commit, file):

- HMLoss, cartelgouabou/HMLoss at 41b3598b0d838da22349981f53a32f5efb020d91,
  ``cifar_implementation/losses.py`` and ``isic2019_implementation/losses.py``
  ``softmax_hard_mining_loss`` / ``SoftmaxHardMiningLoss(weight=w, delta)``:
  ``CE_i = F.cross_entropy(z, y, weight=w, reduction='none') = w_{y_i} (-log p_i)``,
  ``q_i = clip(exp(-CE_i), 1e-10, 1 - 1e-10)``, ``f(q) = sin(pi q)/(pi q) - exp(-delta q) sin(pi delta q)/(pi delta q)``,
  loss ``mean_i(f(q_i) CE_i 10)``. ``cifar_implementation/trainer.py`` passes the CS weights
  ``1/n_c`` normalised to sum C (``--weighting_type CS``) -> longtail ``hml`` ``weighting: hmloss``.
- LDAM-DRW, kaidic/LDAM-DRW at 2536330f2afdaa65618323cb5a5850efccce762a, ``losses.py``
  ``focal_loss`` / ``FocalLoss(weight=w, gamma)``: ``CE_i`` as above (weighted), ``q_i = exp(-CE_i)``,
  loss ``mean_i((1 - q_i)^gamma CE_i)``; the same function is HMLoss's ``FocalLoss`` (both files
  above) -> longtail ``focal`` ``weighting: ldam_drw``.
- IB, pseulki/IB-Loss (the IB paper's README: "official implementation") at
  b29b8b005f614292e9ae8b43903a6f7df8ef09a6, ``losses.py`` ``IB_FocalLoss(weight=w, alpha, gamma)``:
  ``ib_i = alpha / (sum_c |softmax(z_i)_c - onehot_c| * ||h_i||_1 + 0.001)`` (``models/resnet_cifar.py``
  returns ``sum |h|`` of the pooled features), ``CE_i`` weighted, ``q_i = exp(-CE_i)``, loss
  ``mean_i((1 - q_i)^gamma CE_i ib_i)``; ``cifar_train.py`` builds ``IBReweight`` weights ``1/n_c``
  normalised to sum C, gives them to the IB criterion only, and trains with the unweighted
  ``nn.CrossEntropyLoss(weight=None)`` before ``start_ib_epoch`` -> longtail ``ib`` / ``ib_focal``
  ``weighting: ib``. (HMLoss's ``IBLoss`` / ``IB_FocalLoss`` are the same code.)
- CDB, hitachi-rd-cv/CDB-loss at 82b0119e189a50beb3ae581d401dd8585739c112,
  ``EGTEA/losses/focal_loss.py`` ``FocalLoss(alpha=w, gamma)`` (behind ``class_balanced_loss.py``
  ``CB_Focal`` and the ``FL`` baseline): ``logpt = log_softmax(z)_y``, ``pt = exp(logpt.data)``
  (detached), ``loss_i = -(1 - pt_i)^gamma alpha_{y_i} logpt_i``; ``EGTEA_train.py`` takes
  ``torch.mean`` -> longtail ``focal`` ``weighting: cdb``.
- Class-balanced focal (the ``cb_focal.yaml`` recipes), richardaecn/class-balanced-loss at
  1d7857208a2abc03d84e35a9d5383af8225d4b4d, ``src/cifar_main.py`` ``focal_loss`` and ``_tower_fn``:
  ``w_y`` broadcast over the row, element-wise sigmoid BCE times ``exp(-gamma y z - gamma log1p(exp(-z)))``
  (not detached), summed over N x C and divided by ``sum(labels) = N`` -> longtail ``cb`` ``base: focal``
  (its only focal form).
- The defaults kept: ``focal`` ``weighting: mbit`` = yaopengUSTC/mbit-skin-cancer at
  a82a87b2abebaf724dbe2a7b7e833c434c1b56a0 ``lib/loss/loss.py`` ``FocalLoss`` ``cross_entropy``
  (``sum_i w_{y_i} (1 - p_i)^gamma CE_i / sum_i w_{y_i}``, true ``p``); ``hml`` / ``ib_focal``
  ``weighting: longtail`` (true ``p``, the class weight outside).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from longtail.catalog.check import load_config
from longtail.core.errors import ConfigError
from longtail.losses import build_loss, create
from longtail.losses.hml import hard_mining_weight

from ..helpers import value_and_grad

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
HML_RECIPES = ["cifar10_lt/hml1.yaml", "ham10000/hml1.yaml", "ham10000/hml_mel_nv.yaml", "isic2019/hml_mel_nv.yaml"]
HML_CS_RECIPES = ["cifar10_lt/hml1.yaml", "ham10000/hml1.yaml"]  # --weighting_type CS
CB_FOCAL_RECIPES = ["cifar10_lt/cb_focal.yaml", "ham10000/cb_focal.yaml", "medmnist/cb_focal.yaml"]

SIZES = [2, 12]  # C = 2 and C >= 10
N = 9
DELTA = 10000.0
GAMMAS = [0.0, 1.0, 2.0]


# ------------------------------------------------------------------------- fixed inputs
def inputs(num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed float64 logits (N x C) and targets: head-heavy, every class of C = 2, head and tail of C = 12."""
    g = torch.Generator().manual_seed(2500 + num_classes)
    logits = 2.5 * torch.randn(N, num_classes, generator=g, dtype=torch.float64)
    if num_classes == 2:
        targets = torch.tensor([0, 0, 0, 1, 0, 1, 0, 0, 1])
    else:
        targets = torch.tensor([0, 0, 1, 0, 3, 1, 7, 11, 10])
    return logits, targets


def features(num_classes: int) -> torch.Tensor:
    """Fixed penultimate features (N x 5), some negative (the influence uses their L1 norm)."""
    g = torch.Generator().manual_seed(77 + num_classes)
    return torch.randn(N, 5, generator=g, dtype=torch.float64)


def lt_counts(num_classes: int) -> np.ndarray:
    """LDAM-DRW-style exponential profile, IR 100: int(500 * 0.01^(i / (C - 1)))."""
    return np.array([int(500 * 0.01 ** (i / (num_classes - 1))) for i in range(num_classes)])


def official_cs_weights(counts: np.ndarray) -> torch.Tensor:
    """HMLoss ``CS`` / IB ``IBReweight``: ``1 / n_c`` normalised to sum C."""
    w = 1.0 / counts
    return torch.as_tensor(w / w.sum() * len(counts), dtype=torch.float64)


def class_weights(num_classes: int, weighted: bool) -> torch.Tensor:
    return official_cs_weights(lt_counts(num_classes)) if weighted else torch.ones(num_classes, dtype=torch.float64)


def assert_matches(loss, ref, logits: torch.Tensor, rtol: float = 5e-5) -> None:
    """longtail computes in float32, the references in float64: values to 5e-6, gradients to ``rtol``."""
    value, grad = value_and_grad(loss, logits)
    ref_value, ref_grad = value_and_grad(ref, logits)
    assert value == pytest.approx(ref_value, rel=5e-6, abs=1e-7)
    torch.testing.assert_close(grad, ref_grad, rtol=rtol, atol=2e-7)


# The influence alpha / (||softmax - onehot||_1 ||h||_1 + eps) of a confident sample divides by a
# float32 1 - p: the official formula itself, run in float32 on these inputs, is 2e-4 off float64.
IB_RTOL = 3e-4


# ------------------------------------------------------------------ official references
def weighted_ce(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``F.cross_entropy(z, y, weight=w, reduction='none')`` written out: ``-w_y log softmax(z)_y``."""
    logp = z - torch.logsumexp(z, dim=1, keepdim=True)
    return -w[y] * logp[torch.arange(z.shape[0]), y]


def ref_hml_official(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor, delta: float = DELTA) -> torch.Tensor:
    """HMLoss ``softmax_hard_mining_loss``: q from the weighted CE, clipped, sinc difference, times 10, mean."""
    ce = weighted_ce(z, y, w)
    q = torch.clip(torch.exp(-ce), 1e-10, 1.0 - 1e-10)
    f = torch.sin(q * math.pi) / (q * math.pi) - torch.exp(-delta * q) * (torch.sin(q * delta * math.pi) / (q * delta * math.pi))
    return (f * ce * 10).mean()


def ref_hml_longtail(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor, delta: float = DELTA) -> torch.Tensor:
    """longtail's default: the true probability in the modulator, ``w_y`` outside."""
    ce = weighted_ce(z, y, torch.ones_like(w))
    q = torch.clip(torch.exp(-ce), 1e-10, 1.0 - 1e-10)
    f = torch.sin(q * math.pi) / (q * math.pi) - torch.exp(-delta * q) * (torch.sin(q * delta * math.pi) / (q * delta * math.pi))
    return (w[y] * f * ce * 10).mean()


def ref_focal_ldam_drw(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor, gamma: float) -> torch.Tensor:
    """LDAM-DRW ``focal_loss(F.cross_entropy(weight=w, reduction='none'), gamma)``."""
    ce = weighted_ce(z, y, w)
    q = torch.exp(-ce)
    return ((1 - q) ** gamma * ce).mean()


def ref_focal_cdb(z: torch.Tensor, y: torch.Tensor, alpha: torch.Tensor, gamma: float) -> torch.Tensor:
    """CDB EGTEA ``FocalLoss(alpha)``: detached pt, alpha on logpt, reduction 'none', then torch.mean."""
    logpt = F.log_softmax(z, dim=1).gather(1, y.view(-1, 1)).view(-1)
    pt = logpt.detach().exp()
    logpt = logpt * alpha[y]
    return (-1 * (1 - pt) ** gamma * logpt).mean()


def ref_focal_mbit(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor, gamma: float) -> torch.Tensor:
    """MBIT ``FocalLoss`` ``cross_entropy``: true p, ``sum w (1-p)^gamma CE / sum w``."""
    ce = weighted_ce(z, y, torch.ones_like(w))
    p = torch.exp(-ce)
    wy = w[y]
    return (wy * (1 - p) ** gamma * ce).sum() / wy.sum()


def ref_ib_official(z: torch.Tensor, y: torch.Tensor, h: torch.Tensor, w: torch.Tensor, alpha: float, gamma: float | None) -> torch.Tensor:
    """IB-Loss ``IBLoss`` (gamma None) / ``IB_FocalLoss``: influence from softmax and sum |h|, weighted CE, mean."""
    grads = torch.sum(torch.abs(F.softmax(z, dim=1) - F.one_hot(y, z.shape[1])), 1)
    ib = alpha / (grads * torch.sum(torch.abs(h), 1) + 0.001)
    ce = weighted_ce(z, y, w)
    if gamma is None:
        return (ce * ib).mean()
    q = torch.exp(-ce)
    return ((1 - q) ** gamma * ce * ib).mean()


def ref_cb_focal_cui(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor, gamma: float) -> torch.Tensor:
    """class-balanced-loss ``focal_loss``: row-broadcast w_y, sigmoid BCE times its stable modulator, sum / N."""
    labels = F.one_hot(y, z.shape[1]).to(z.dtype)
    bce = F.binary_cross_entropy_with_logits(z, labels, reduction="none")
    modulator = torch.exp(-gamma * labels * z - gamma * torch.log1p(torch.exp(-1.0 * z))) if gamma else 1.0
    alpha = w[y][:, None].expand_as(z)
    return (alpha * modulator * bce).sum() / labels.sum()


def with_weights(loss, w: torch.Tensor):
    loss.set_class_weights(w.float())
    return loss


# ---------------------------------------------------------------------------------- HML
@pytest.mark.parametrize("num_classes", SIZES)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "cs_weights"])
@pytest.mark.parametrize("delta", [DELTA, 1e10])
def test_hml_hmloss_form_matches_softmax_hard_mining_loss(num_classes: int, weighted: bool, delta: float) -> None:
    z, y = inputs(num_classes)
    w = class_weights(num_classes, weighted)
    loss = with_weights(create("hml", lt_counts(num_classes), delta=delta, weighting="hmloss"), w)
    assert_matches(lambda t: loss(t, y), lambda t: ref_hml_official(t, y, w, delta), z)


@pytest.mark.parametrize("num_classes", SIZES)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "cs_weights"])
def test_hml_longtail_form_matches_its_formula(num_classes: int, weighted: bool) -> None:
    z, y = inputs(num_classes)
    w = class_weights(num_classes, weighted)
    loss = with_weights(create("hml", lt_counts(num_classes), delta=DELTA), w)
    assert loss.weighting == "longtail"
    assert_matches(lambda t: loss(t, y), lambda t: ref_hml_longtail(t, y, w), z)


@pytest.mark.parametrize("num_classes", SIZES)
def test_hml_forms_agree_without_weights_and_differ_with_them(num_classes: int) -> None:
    z, y = inputs(num_classes)
    counts = lt_counts(num_classes)
    official, default = create("hml", counts, weighting="hmloss"), create("hml", counts)
    assert torch.equal(official(z, y), default(z, y))
    w = class_weights(num_classes, True)
    with_weights(official, w), with_weights(default, w)
    assert float(official(z, y)) != pytest.approx(float(default(z, y)), rel=1e-2)


def test_hml_default_is_bit_identical_to_the_true_probability_form() -> None:
    """The default computes exactly what it computed before the option (op for op)."""
    z, y = inputs(12)
    w = class_weights(12, True).float()
    default, explicit = create("hml", lt_counts(12)), create("hml", lt_counts(12), weighting="longtail")
    for loss in (default, explicit):
        loss.set_class_weights(w)
    ce = F.cross_entropy(z.float(), y, reduction="none")
    p = torch.exp(-ce).clamp(1e-10, 1.0 - 1e-10)
    expected = (torch.ones(N) * w[y] * (10.0 * hard_mining_weight(p, DELTA) * ce)).sum() / N
    assert torch.equal(default(z, y), expected)
    assert torch.equal(default(z, y), explicit(z, y))


# -------------------------------------------------------------------------------- focal
@pytest.mark.parametrize("num_classes", SIZES)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "cs_weights"])
@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize(
    ("weighting", "ref"),
    [("ldam_drw", ref_focal_ldam_drw), ("cdb", ref_focal_cdb), ("mbit", ref_focal_mbit)],
    ids=["ldam_drw", "cdb", "mbit"],
)
def test_focal_forms_match_their_official_code(num_classes: int, weighted: bool, gamma: float, weighting: str, ref) -> None:
    z, y = inputs(num_classes)
    w = class_weights(num_classes, weighted)
    loss = with_weights(create("focal", lt_counts(num_classes), gamma=gamma, variant="softmax", weighting=weighting), w)
    assert_matches(lambda t: loss(t, y), lambda t: ref(t, y, w, gamma), z)


@pytest.mark.parametrize("num_classes", SIZES)
def test_focal_cdb_form_detaches_the_modulator(num_classes: int) -> None:
    """Same value as the attached batch-mean focal, different gradient (CDB's ``Variable(logpt.data.exp())``)."""
    z, y = inputs(num_classes)
    w = class_weights(num_classes, True)
    loss = with_weights(create("focal", lt_counts(num_classes), gamma=2.0, weighting="cdb"), w)

    def attached(t: torch.Tensor) -> torch.Tensor:
        ce = weighted_ce(t, y, torch.ones_like(w))
        return (w[y] * (1 - torch.exp(-ce)) ** 2 * ce).mean()

    value, grad = value_and_grad(lambda t: loss(t, y), z)
    v_att, g_att = value_and_grad(attached, z)
    assert value == pytest.approx(v_att, rel=5e-6)
    assert not torch.allclose(grad, g_att, rtol=1e-3)


@pytest.mark.parametrize("num_classes", SIZES)
def test_focal_ldam_drw_equals_mbit_without_weights(num_classes: int) -> None:
    z, y = inputs(num_classes)
    counts = lt_counts(num_classes)
    a, b = create("focal", counts, gamma=1.0, weighting="ldam_drw"), create("focal", counts, gamma=1.0)
    assert float(a(z, y)) == pytest.approx(float(b(z, y)), rel=1e-6)
    w = class_weights(num_classes, True)
    with_weights(a, w), with_weights(b, w)
    assert float(a(z, y)) != pytest.approx(float(b(z, y)), rel=1e-2)


def test_focal_default_is_bit_identical_to_the_mbit_form() -> None:
    z, y = inputs(12)
    w = class_weights(12, True).float()
    default, explicit = create("focal", lt_counts(12), gamma=2.0), create("focal", lt_counts(12), gamma=2.0, weighting="mbit")
    for loss in (default, explicit):
        loss.set_class_weights(w)
    assert default.weighting == "mbit"
    ce = F.cross_entropy(z.float(), y, reduction="none")
    terms = (1.0 - torch.exp(-ce)).clamp_min(1e-12).pow(2.0) * ce
    expected = (torch.ones(N) * w[y] * terms).sum() / w[y].sum().clamp_min(1e-12)
    assert torch.equal(default(z, y), expected)
    assert torch.equal(default(z, y), explicit(z, y))


def test_focal_weighting_is_checked() -> None:
    with pytest.raises(ConfigError, match="weighting"):
        create("focal", [5, 3], weighting="official")
    for variant in ("sigmoid", "ldam"):  # the official forms are softmax focal losses
        for weighting in ("ldam_drw", "cdb"):
            with pytest.raises(ConfigError, match="variant: softmax"):
                create("focal", [5, 3], variant=variant, weighting=weighting)
    assert create("focal", [5, 3], variant="sigmoid", weighting="mbit").weighting == "mbit"


# ---------------------------------------------------------------------------- IB, IB-focal
@pytest.mark.parametrize("num_classes", SIZES)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "ibreweight"])
@pytest.mark.parametrize("gamma", [None, *GAMMAS], ids=["ib", "focal0", "focal1", "focal2"])
def test_ib_form_matches_ib_loss_code(num_classes: int, weighted: bool, gamma: float | None) -> None:
    z, y = inputs(num_classes)
    h = features(num_classes)
    w = class_weights(num_classes, weighted)
    if gamma is None:
        loss = create("ib", lt_counts(num_classes), alpha=1000.0, weighting="ib")
    else:
        loss = create("ib_focal", lt_counts(num_classes), alpha=1000.0, gamma=gamma, weighting="ib")
    with_weights(loss, w)
    assert_matches(lambda t: loss(t, y, h), lambda t: ref_ib_official(t, y, h, w, 1000.0, gamma), z, rtol=IB_RTOL)


@pytest.mark.parametrize("num_classes", SIZES)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "ibreweight"])
def test_ib_focal_longtail_form_uses_the_true_probability(num_classes: int, weighted: bool) -> None:
    z, y = inputs(num_classes)
    h = features(num_classes)
    w = class_weights(num_classes, weighted)
    loss = with_weights(create("ib_focal", lt_counts(num_classes), alpha=1000.0, gamma=2.0), w)
    assert loss.weighting == "longtail"

    def ref(t: torch.Tensor) -> torch.Tensor:
        grads = torch.sum(torch.abs(F.softmax(t, dim=1) - F.one_hot(y, num_classes)), 1)
        ib = 1000.0 / (grads * torch.sum(torch.abs(h), 1) + 0.001)
        ce = weighted_ce(t, y, torch.ones_like(w))
        return (w[y] * ib * (1 - torch.exp(-ce)) ** 2 * ce).mean()

    assert_matches(lambda t: loss(t, y, h), ref, z, rtol=IB_RTOL)


@pytest.mark.parametrize("name", ["ib", "ib_focal"])
@pytest.mark.parametrize("num_classes", SIZES)
def test_ib_warm_up_official_is_unweighted_ce(name: str, num_classes: int) -> None:
    """Before start_ib_epoch the IB code trains with nn.CrossEntropyLoss(weight=None); longtail weights it."""
    z, y = inputs(num_classes)
    h = features(num_classes)
    w = class_weights(num_classes, True)
    official = with_weights(create(name, lt_counts(num_classes), start_epoch=3, weighting="ib"), w)
    default = with_weights(create(name, lt_counts(num_classes), start_epoch=3), w)
    for loss in (official, default):
        loss.on_epoch_start(2, 10)
        assert not loss.active
    assert_matches(lambda t: official(t, y, h), lambda t: F.cross_entropy(t, y), z)
    assert_matches(lambda t: default(t, y, h), lambda t: weighted_ce(t, y, w).mean(), z)


def test_ib_default_is_bit_identical_to_the_true_probability_form() -> None:
    z, y = inputs(12)
    h = features(12)
    w = class_weights(12, True).float()
    default, explicit = create("ib_focal", lt_counts(12), gamma=2.0), create("ib_focal", lt_counts(12), gamma=2.0, weighting="longtail")
    for loss in (default, explicit):
        loss.set_class_weights(w)
    zf, hf = z.float(), h.float()
    ce = F.cross_entropy(zf, y, reduction="none")
    residual = (torch.softmax(zf, 1) - F.one_hot(y, 12).float()).abs().sum(1)
    ib = 10000.0 / (residual * hf.abs().sum(1) + 1e-3)
    expected = (torch.ones(N) * w[y] * (ib * ((1.0 - torch.exp(-ce)).clamp_min(1e-12).pow(2.0) * ce))).sum() / N
    assert torch.equal(default(z, y, h), expected)
    assert torch.equal(default(z, y, h), explicit(z, y, h))


def test_ib_weighting_is_checked() -> None:
    for name in ("ib", "ib_focal"):
        with pytest.raises(ConfigError, match="weighting"):
            create(name, [5, 3], weighting="official")
    with pytest.raises(ConfigError, match="weighting"):
        create("hml", [5, 3], weighting="official")


# ------------------------------------------------------------------------ label mixing
@pytest.mark.parametrize(
    ("name", "kwargs", "needs_h"),
    [
        ("hml", {"weighting": "hmloss"}, False),
        ("focal", {"weighting": "ldam_drw", "gamma": 1.0}, False),
        ("focal", {"weighting": "cdb", "gamma": 1.0}, False),
        ("ib_focal", {"weighting": "ib", "gamma": 1.0}, True),
    ],
    ids=["hml", "focal_ldam_drw", "focal_cdb", "ib_focal"],
)
def test_official_forms_split_under_label_mixing(name: str, kwargs: dict, needs_h: bool) -> None:
    """sample_weight multiplies each term: lam * L(ya) + (1 - lam) * L(yb) exactly, as for every loss."""
    z, y = inputs(12)
    h = features(12) if needs_h else None
    loss = with_weights(create(name, lt_counts(12), **kwargs), class_weights(12, True))
    yb, lam = y.flip(0), 0.3
    mixed = loss(z, y, h, sample_weight=lam) + loss(z, yb, h, sample_weight=1 - lam)
    assert float(mixed) == pytest.approx(lam * float(loss(z, y, h)) + (1 - lam) * float(loss(z, yb, h)), rel=1e-6)


# ------------------------------------------------------------------------------ recipes
def hml_stages(recipe: str) -> list:
    cfg = load_config(CONFIGS / recipe)
    return [s for s in cfg.resolved_stages() if s.loss.name == "hml"]


@pytest.mark.parametrize("recipe", HML_RECIPES)
def test_hmloss_recipes_run_the_official_form(recipe: str) -> None:
    stages = hml_stages(recipe)
    assert stages, f"{recipe}: no hml stage"
    for stage in stages:
        assert stage.loss.kwargs.get("weighting") == "hmloss"
        assert build_loss(stage.loss, [20, 10]).weighting == "hmloss"
    header = " ".join(line.lstrip("#").strip() for line in (CONFIGS / recipe).read_text().splitlines() if line.startswith("#"))
    assert "loss.weighting hmloss" in header  # the header says which form it runs


@pytest.mark.parametrize("recipe", HML_CS_RECIPES)
def test_hmloss_cs_recipes_put_the_cs_weights_into_the_probability(recipe: str) -> None:
    """The HML stage of the CS recipes with its schedule's weights computes HMLoss's loss on 10-class CIFAR counts."""
    (stage,) = hml_stages(recipe)
    assert stage.class_weights.name == "inverse_frequency" and stage.class_weights.kwargs.get("power", 1.0) == 1.0
    counts = np.array([int(5000 * 0.01 ** (i / 9)) for i in range(10)])  # CIFAR-10-LT, IR 100
    loss = build_loss(stage.loss, counts)
    w = official_cs_weights(counts)
    loss.set_class_weights(w.float())
    g = torch.Generator().manual_seed(5)
    z = 2.0 * torch.randn(16, 10, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 1, 1, 2, 0, 3, 4, 1, 5, 6, 7, 8, 9, 0])
    assert_matches(lambda t: loss(t, y), lambda t: ref_hml_official(t, y, w, float(stage.loss.kwargs["delta"])), z)


def test_every_shipped_hml_recipe_sets_the_official_form() -> None:
    """Every recipe using hml reproduces HMLoss, so none may fall back to the longtail form silently."""
    found = []
    for path in sorted(CONFIGS.rglob("*.yaml")):
        cfg = load_config(path)
        for stage in cfg.resolved_stages():
            if stage.loss.name == "hml":
                found.append(path.relative_to(CONFIGS).as_posix())
                assert stage.loss.kwargs.get("weighting") == "hmloss", path
    assert sorted(set(found)) == sorted(HML_RECIPES)


@pytest.mark.parametrize("recipe", CB_FOCAL_RECIPES)
def test_cb_focal_recipes_run_cui_et_al_official_focal(recipe: str) -> None:
    """``cb`` ``base: focal`` is class-balanced-loss's sigmoid focal exactly (value and gradient)."""
    cfg = load_config(CONFIGS / recipe)
    (stage,) = cfg.resolved_stages()
    assert stage.loss.name == "cb" and stage.loss.kwargs["base"] == "focal"
    beta, gamma = float(stage.loss.kwargs["beta"]), float(stage.loss.kwargs["gamma"])
    counts = lt_counts(12)
    loss = build_loss(stage.loss, counts)
    effective = (1.0 - np.power(beta, counts)) / (1.0 - beta)
    w = 1.0 / effective
    w = torch.as_tensor(w / w.sum() * len(counts), dtype=torch.float64)
    z, y = inputs(12)
    assert_matches(lambda t: loss(t, y), lambda t: ref_cb_focal_cui(t, y, w, gamma), z)
