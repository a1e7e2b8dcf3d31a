"""Each loss against hand-computed values, library references, and the reductions theory predicts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from longtail.losses import create
from longtail.losses.cce import complement_entropy_terms
from longtail.losses.hml import hard_mining_weight
from longtail.losses.low import low_sample_weights, project_to_simplex
from longtail.losses.mwnl import clip_abnormal

Z = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-0.5, 1.5, 0.0], [0.3, -2.0, 1.0]])
Y = torch.tensor([0, 2, 1, 1])
COUNTS = [16, 81, 1]  # n^-1/4 = 1/2, 1/3, 1: LDAM margins are easy to write down
W = torch.tensor([0.5, 1.0, 2.0])


def np_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def np_ce(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    return -np.log(np_softmax(z)[np.arange(len(y)), y])


ZN, YN, WN = Z.numpy().astype(np.float64), Y.numpy(), W.numpy().astype(np.float64)


def sigmoid_elements(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(BCE, p_t) per element, the textbook way."""
    onehot = np.eye(z.shape[1])[y]
    sig = 1 / (1 + np.exp(-z))
    p_t = np.where(onehot == 1, sig, 1 - sig)
    return -np.log(p_t), p_t


# ------------------------------------------------------------------ reductions to plain CE
@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("balanced_softmax", {}),
        ("logit_adjusted", {"tau": 1.0}),
        ("logit_adjusted", {"tau": 2.5}),
        ("focal", {"gamma": 0.0}),
        ("cb", {"beta": 0.0}),
        ("ldam", {"max_margin": 0.0, "scale": 1.0}),
        ("cdb_ce", {}),  # before the first validation all difficulty weights are 1
        ("ce", {}),
    ],
)
def test_reduces_to_cross_entropy(name: str, kwargs: dict) -> None:
    counts = [7, 7, 7] if name in {"balanced_softmax", "logit_adjusted"} else COUNTS
    loss = create(name, counts, **kwargs)
    assert torch.allclose(loss(Z, Y), F.cross_entropy(Z, Y), atol=1e-6)


def test_ce_matches_torch_with_weights_and_label_smoothing() -> None:
    loss = create("ce", COUNTS)
    loss.set_class_weights(W)
    assert torch.allclose(loss(Z, Y), F.cross_entropy(Z, Y, weight=W), atol=1e-6)
    smoothed = create("ce", COUNTS, label_smoothing=0.2)
    assert torch.allclose(smoothed(Z, Y), F.cross_entropy(Z, Y, label_smoothing=0.2), atol=1e-6)


def test_balanced_softmax_and_logit_adjustment_shift_by_the_log_prior() -> None:
    counts = np.array([100.0, 10.0, 1.0])
    expected = np_ce(ZN + np.log(counts), YN).mean()
    assert create("balanced_softmax", counts)(Z, Y).item() == pytest.approx(expected, rel=1e-5)
    # tau = 1 differs from balanced softmax only by a constant shift log(sum n): same loss
    assert create("logit_adjusted", counts, tau=1.0)(Z, Y).item() == pytest.approx(expected, rel=1e-5)
    half = np_ce(ZN + 0.5 * np.log(counts / counts.sum()), YN).mean()
    assert create("logit_adjusted", counts, tau=0.5)(Z, Y).item() == pytest.approx(half, rel=1e-5)


# ------------------------------------------------------------------------------ focal
def test_focal_softmax_hand_value_with_class_weights() -> None:
    loss = create("focal", COUNTS, gamma=2.0, variant="softmax")
    loss.set_class_weights(W)
    p = np_softmax(ZN)[np.arange(4), YN]
    w = WN[YN]
    expected = (w * (1 - p) ** 2 * -np.log(p)).sum() / w.sum()
    assert loss(Z, Y).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("reduction", ["normal", "enlarge"])
def test_focal_sigmoid_hand_value(reduction: str) -> None:
    loss = create("focal", COUNTS, gamma=2.0, variant="sigmoid", reduction=reduction)
    loss.set_class_weights(W)
    bce, p_t = sigmoid_elements(ZN, YN)
    weighted = WN[YN][:, None] * (1 - p_t) ** 2 * bce
    expected = weighted.mean() * 30 if reduction == "enlarge" else weighted.sum() / (WN[YN].sum() * 3)
    assert loss(Z, Y).item() == pytest.approx(expected, rel=1e-5)


def test_focal_sigmoid_gamma_zero_is_weighted_bce() -> None:
    loss = create("focal", COUNTS, gamma=0.0, variant="sigmoid")
    loss.set_class_weights(W)
    onehot = F.one_hot(Y, 3).float()
    row_w = W[Y][:, None].expand(-1, 3)
    expected = F.binary_cross_entropy_with_logits(Z, onehot, weight=row_w, reduction="sum") / row_w.sum()
    assert torch.allclose(loss(Z, Y), expected, atol=1e-6)


def test_focal_ldam_variant_with_gamma_zero_is_ldam() -> None:
    focal = create("focal", COUNTS, gamma=0.0, variant="ldam", max_margin=0.5, scale=30.0)
    assert torch.allclose(focal(Z, Y), create("ldam", COUNTS)(Z, Y), atol=1e-5)


# ------------------------------------------------------------------------------- LDAM
def test_ldam_margins_and_value() -> None:
    loss = create("ldam", COUNTS, max_margin=0.5, scale=30.0)
    assert torch.allclose(loss.margins, torch.tensor([0.25, 0.5 / 3, 0.5]))
    assert loss.margins.max().item() == pytest.approx(0.5)
    counts = np.array(COUNTS, dtype=np.float64)
    ratio = loss.margins.numpy() / counts ** -0.25
    assert np.allclose(ratio, ratio[0])  # proportional to n^-1/4
    margins = np.array([0.25, 0.5 / 3, 0.5])
    shifted = ZN - np.eye(3)[YN] * margins[YN][:, None]
    assert loss(Z, Y).item() == pytest.approx(np_ce(30 * shifted, YN).mean(), rel=1e-5)


# --------------------------------------------------------------------------------- CB
def test_cb_weights_and_softmax_value() -> None:
    counts = [100, 10, 1]
    loss = create("cb", counts, beta=0.9, base="softmax")
    effective = np.array([(1 - 0.9**n) / 0.1 for n in counts])  # 9.99973, 6.5132, 1
    w = (1 / effective) / (1 / effective).sum() * 3
    assert np.allclose(loss.cb_weights.numpy(), w, rtol=1e-6)
    assert w[2] == pytest.approx(3 / (1 + 1 / 6.513215599 + 1 / 9.999734386), rel=1e-6)
    assert loss(Z, Y).item() == pytest.approx((w[YN] * np_ce(ZN, YN)).mean(), rel=1e-5)


def test_cb_sigmoid_and_focal_values() -> None:
    counts = [100, 10, 1]
    w = create("cb", counts, beta=0.9).cb_weights.numpy()
    bce, p_t = sigmoid_elements(ZN, YN)
    sig = create("cb", counts, beta=0.9, base="sigmoid")(Z, Y).item()
    assert sig == pytest.approx((w[YN] * bce.sum(1)).mean(), rel=1e-5)
    foc = create("cb", counts, beta=0.9, base="focal", gamma=2.0)(Z, Y).item()
    assert foc == pytest.approx((w[YN] * ((1 - p_t) ** 2 * bce).sum(1)).mean(), rel=1e-5)


def test_cb_softmax_bce_is_the_vandit15_softmax_branch() -> None:
    """weight balancing's stage-2 loss: BCE of the softmax probabilities, w_y on each element, mean over N x C."""
    counts = [100, 10, 1]
    loss = create("cb", counts, beta=0.9999, base="softmax_bce")
    w = loss.cb_weights.numpy()
    p = np.exp(ZN - ZN.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.eye(3)[YN]
    elements = -(onehot * np.log(p) + (1 - onehot) * np.log(1 - p))
    assert loss(Z, Y).item() == pytest.approx((w[YN][:, None] * elements).mean(), rel=1e-5)
    z, zr = Z.clone().requires_grad_(True), Z.clone().requires_grad_(True)
    loss(z, Y).backward()
    F.binary_cross_entropy(zr.softmax(1), F.one_hot(Y, 3).float(), weight=torch.as_tensor(w)[Y][:, None].expand(-1, 3)).backward()
    assert torch.allclose(z.grad, zr.grad, rtol=1e-5, atol=1e-7)


# -------------------------------------------------------------------------------- EQL
def test_eql_element_weights_and_value() -> None:
    counts = [1000, 10, 1]  # frequencies 0.989, 0.0099, 0.00099: only class 2 is below lambda 0.005
    loss = create("eql", counts, lambda_=0.005, gamma=1.0)
    assert loss.tail.tolist() == [0.0, 0.0, 1.0]
    w = loss.element_weights(Y, apply=True)
    assert w.tolist() == [[1, 1, 0], [1, 1, 1], [1, 1, 0], [1, 1, 0]]  # class 2's negatives dropped
    assert torch.equal(loss.element_weights(Y, apply=False), torch.ones(4, 3))
    bce, _ = sigmoid_elements(ZN, YN)
    assert loss(Z, Y).item() == pytest.approx((w.numpy() * bce).sum() / 4, rel=1e-5)
    never = create("eql", counts, lambda_=0.005, gamma=0.0)
    assert never(Z, Y).item() == pytest.approx(bce.sum() / 4, rel=1e-5)


def test_eql_bernoulli_draw_follows_the_torch_seed() -> None:
    loss = create("eql", [1000, 10, 1], gamma=0.5)
    torch.manual_seed(0)
    a = [loss(Z, Y).item() for _ in range(20)]
    torch.manual_seed(0)
    b = [loss(Z, Y).item() for _ in range(20)]
    assert a == b and len(set(np.round(a, 6))) == 2  # both outcomes of E occur


# ------------------------------------------------------------------------------ GHM-C
def test_ghmc_bin_weights_on_a_hand_made_example() -> None:
    loss = create("ghmc", [5, 5], bins=10)
    z = torch.tensor([[0.0, 0.0], [0.0, 10.0]])
    y = torch.tensor([0, 1])
    # g = |sigmoid(z) - onehot| = 0.5 for three elements (bin 5), ~4.5e-5 for one (bin 0):
    # tot = 4 elements, 2 non-empty bins -> 4 / 3 / 2 and 4 / 1 / 2
    w = loss.harmonizing_weights(z, y)
    assert torch.allclose(w, torch.tensor([[2 / 3, 2 / 3], [2 / 3, 2.0]]))
    bce, _ = sigmoid_elements(z.numpy().astype(np.float64), y.numpy())
    assert loss(z, y).item() == pytest.approx((w.numpy() * bce).sum() / 4, rel=1e-5)


def test_ghmc_momentum_updates_only_in_training() -> None:
    loss = create("ghmc", [5, 5], bins=10, momentum=0.5)
    z, y = torch.tensor([[0.0, 0.0], [0.0, 10.0]]), torch.tensor([0, 1])
    first = loss.harmonizing_weights(z, y)  # acc = 0.5 * counts -> weights double
    assert torch.allclose(first, torch.tensor([[4 / 3, 4 / 3], [4 / 3, 4.0]]))
    second = loss.harmonizing_weights(z, y)  # acc = 0.5 * 0.5 * c + 0.5 * c = 0.75 c
    assert torch.allclose(second, first * 0.5 / 0.75)
    loss.eval()
    frozen = loss.acc_sum.clone()
    loss.harmonizing_weights(z, y)
    assert torch.equal(loss.acc_sum, frozen)


# -------------------------------------------------------------------------------- LOW
def _qp_objective(w: np.ndarray, g2: np.ndarray, lamb: float) -> float:
    return lamb * (w**2).sum() - ((g2 + lamb) * w).sum()


def _projected_gradient_qp(g2: np.ndarray, lamb: float, total: float, steps: int = 200) -> np.ndarray:
    """Brute force: projected gradient with a bisection projection (independent of the sort-based one)."""
    def project(v: np.ndarray) -> np.ndarray:
        lo, hi = v.min() - total, v.max()
        for _ in range(100):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if np.maximum(v - mid, 0).sum() > total else (lo, mid)
        return np.maximum(v - (lo + hi) / 2, 0)

    w = np.full_like(g2, total / g2.size)
    for _ in range(steps):
        w = project(w - 0.2 / lamb * (2 * lamb * w - (g2 + lamb)))
    return w


def test_simplex_projection_is_exact() -> None:
    v = torch.tensor([3.0, -1.0, 0.5, 2.0])
    w = project_to_simplex(v, 2.0)  # theta = (3 + 2 - 2) / 2 = 1.5 -> [1.5, 0, 0, 0.5]
    assert torch.allclose(w, torch.tensor([1.5, 0.0, 0.0, 0.5]))
    inside = torch.tensor([0.2, 0.3, 0.5])
    assert torch.allclose(project_to_simplex(inside, 1.0), inside)


@pytest.mark.parametrize("lamb", [0.01, 1e-4])
def test_low_weights_solve_the_qp(lamb: float) -> None:
    z = torch.tensor([[4.0, -2.0, 0.0], [0.0, 0.0, 0.0], [-3.0, 3.0, 0.5], [1.0, 0.9, -1.0], [0.2, -0.1, 2.0]])
    y = torch.tensor([0, 1, 0, 2, 2])
    w = low_sample_weights(z.double(), y, lamb).numpy()
    assert w.sum() == pytest.approx(5.0) and (w >= 0).all()
    g2 = ((np_softmax(z.numpy().astype(np.float64)) - np.eye(3)[y.numpy()]) ** 2).sum(1) / 25
    brute = _projected_gradient_qp(g2, lamb, 5.0)
    assert np.allclose(w, brute, atol=1e-6)
    if lamb == 1e-4:
        assert (w == 0).any()  # the active constraint case is covered
    try:
        from scipy.optimize import minimize
    except ImportError:
        return
    res = minimize(_qp_objective, np.ones(5), args=(g2, lamb), bounds=[(0, None)] * 5,
                   constraints=[{"type": "eq", "fun": lambda v: v.sum() - 5.0}], method="SLSQP", options={"ftol": 1e-15})
    assert _qp_objective(w, g2, lamb) <= res.fun + 1e-10
    assert np.allclose(w, res.x, atol=1e-4)


def test_low_loss_value_and_eval_mode() -> None:
    loss = create("low", COUNTS, lamb=0.01)
    loss.set_class_weights(W)
    low = low_sample_weights(Z, Y, 0.01).numpy()
    w = WN[YN]
    assert loss(Z, Y).item() == pytest.approx((w * low * np_ce(ZN, YN)).sum() / w.sum(), rel=1e-5)
    loss.eval()
    assert torch.allclose(loss(Z, Y), F.cross_entropy(Z, Y, weight=W), atol=1e-6)


# -------------------------------------------------------------------------------- CCE
def test_cce_hand_value_without_double_softmax() -> None:
    q = np_softmax(ZN)
    qy = q[np.arange(4), YN]
    tilde = q / (1 - qy[:, None] + 1e-7)
    mask = 1 - np.eye(3)[YN]
    complement = (mask * tilde * np.log(tilde + 1e-10)).sum(1) / 2
    assert np.allclose(complement_entropy_terms(Z, Y).numpy(), complement, atol=1e-6)
    expected = (np_ce(ZN, YN) + complement).mean()
    value = create("cce", COUNTS)(Z, Y).item()
    assert value == pytest.approx(expected, rel=1e-5)
    double_softmax = (np_ce(q, YN) + complement).mean()  # MBIT's bug, which we do not reproduce
    assert abs(value - double_softmax) > 0.05
    # the complement entropy is minimal (-log(C-1)/(C-1)) when the wrong classes are uniform
    flat = complement_entropy_terms(torch.tensor([[5.0, 1.0, 1.0]]), torch.tensor([0]))
    assert flat.item() == pytest.approx(-math.log(2) / 2, rel=1e-6)


# ------------------------------------------------------------------------------- MWNL
def test_mwnl_clipping_threshold_for_each_clip_type() -> None:
    th = -math.log(0.1)
    assert th == pytest.approx(2.302585, rel=1e-6)
    bce = torch.tensor([1.0, th, 3.0])
    assert torch.allclose(clip_abnormal(bce, 0.1, "fix"), torch.tensor([1.0, th, th]))
    assert torch.allclose(clip_abnormal(bce, 0.1, "zero"), torch.tensor([1.0, th, 0.0]))
    assert torch.allclose(clip_abnormal(bce, 0.1, "decrease"), torch.tensor([1.0, th, math.exp(-3.0) * th / 0.1]))
    assert torch.equal(clip_abnormal(bce, 0.0, "fix"), bce)


@pytest.mark.parametrize("clip", ["zero", "fix", "decrease"])
@pytest.mark.parametrize("reduction", ["normal", "enlarge"])
def test_mwnl_hand_value(clip: str, reduction: str) -> None:
    z = Z.clone()
    z[0, 0] = -4.0  # the true class of sample 0 has p_t = sigmoid(-4) < 0.1: an "abnormal" element
    zn = z.numpy().astype(np.float64)
    loss = create("mwnl", COUNTS, beta=0.1, clip=clip, gamma=2.0, reduction=reduction)
    loss.set_class_weights(W)
    bce, p_t = sigmoid_elements(zn, YN)
    th = -math.log(0.1)
    clipped = {"fix": np.minimum(bce, th), "zero": np.where(bce <= th, bce, 0.0), "decrease": np.where(bce <= th, bce, p_t * th / 0.1)}[clip]
    el = WN[YN][:, None] * (1 - p_t) ** 2 * clipped
    expected = el.mean() * 30 if reduction == "enlarge" else el.sum() / (WN[YN].sum() * 3)
    assert loss(z, Y).item() == pytest.approx(expected, rel=1e-5)


def test_mwnl_without_clipping_is_sigmoid_focal() -> None:
    mwnl = create("mwnl", COUNTS, beta=0.0, gamma=2.0)
    focal = create("focal", COUNTS, gamma=2.0, variant="sigmoid")
    assert torch.allclose(mwnl(Z, Y), focal(Z, Y), atol=1e-6)


# -------------------------------------------------------------------------------- HML
def test_hml_weight_shape() -> None:
    delta = 10000.0
    assert hard_mining_weight(torch.tensor(0.0, dtype=torch.float64), delta).item() == 0.0
    assert abs(hard_mining_weight(torch.tensor(1.0, dtype=torch.float64), delta).item()) < 1e-12
    assert hard_mining_weight(torch.tensor(1 / delta, dtype=torch.float64), delta).item() == pytest.approx(1.0, abs=1e-6)
    p = torch.linspace(0, 1, 200001, dtype=torch.float64)
    f = hard_mining_weight(p, delta)
    peak = p[f.argmax()].item()
    assert 0.5 / delta <= peak <= 3 / delta and f.max().item() < 1.1
    mid = p[p > 0.01]
    assert torch.allclose(hard_mining_weight(mid, delta), torch.sinc(mid), atol=1e-12)  # easy side = sinc(p)


def test_hml_value_uses_true_probability_with_class_weights() -> None:
    loss = create("hml", COUNTS, delta=10.0, scale=10.0)
    loss.set_class_weights(W)
    ce = np_ce(ZN, YN)
    p = np.exp(-ce)
    f = np.sinc(p) - np.exp(-10 * p) * np.sinc(10 * p)  # numpy's sinc is the normalised one
    assert loss(Z, Y).item() == pytest.approx((WN[YN] * 10 * f * ce).mean(), rel=1e-5)


# --------------------------------------------------------------------------------- IB
def test_ib_weights_value_and_warm_up() -> None:
    h = torch.tensor([[1.0, -2.0], [0.5, 0.5], [3.0, 0.0], [0.1, 0.2]])
    p = np_softmax(ZN)
    residual = np.abs(p - np.eye(3)[YN]).sum(1)
    ib = 1000.0 / (residual * np.abs(h.numpy()).sum(1) + 0.001)
    ce = np_ce(ZN, YN)
    loss = create("ib", COUNTS, alpha=1000.0, start_epoch=3)
    loss.on_epoch_start(2, 10)
    assert torch.allclose(loss(Z, Y, h), F.cross_entropy(Z, Y), atol=1e-6)  # warm-up: plain CE
    loss.on_epoch_start(3, 10)
    assert loss(Z, Y, h).item() == pytest.approx((ib * ce).mean(), rel=1e-5)
    focal = create("ib_focal", COUNTS, alpha=1000.0, gamma=2.0)
    pt = p[np.arange(4), YN]
    assert focal(Z, Y, h).item() == pytest.approx((ib * (1 - pt) ** 2 * ce).mean(), rel=1e-5)
    assert create("ib", COUNTS).alpha == 10000.0 and create("ib", COUNTS).needs_features


# -------------------------------------------------------------------------------- CDB
def test_cdb_losses_follow_validation_accuracy() -> None:
    acc = np.array([0.9, 0.5, 0.0])
    d2 = np.array([0.01, 0.25, 1.0])
    w = d2 / d2.sum() * 3
    ce_loss = create("cdb_ce", COUNTS, tau=2.0)
    ce_loss.on_validation_end(acc)
    assert np.allclose(ce_loss.cdb_weights.numpy(), w, rtol=1e-6)
    ce = np_ce(ZN, YN)
    assert ce_loss(Z, Y).item() == pytest.approx((w[YN] * ce).mean(), rel=1e-5)
    focal = create("cdb_focal", COUNTS, tau=2.0, gamma=1.0)
    focal.on_validation_end(acc)
    pt = np.exp(-ce)
    assert focal(Z, Y).item() == pytest.approx((w[YN] * (1 - pt) * ce).mean(), rel=1e-5)


def test_cdb_dynamic_tau_forms_and_zero_weight_floor() -> None:
    acc = np.array([0.8, 0.6, 0.4])
    ratio = 0.8 / (0.4 + 0.01)
    for form, tau in [("imagenet", 2 / (1 + math.exp(-(ratio - 1)))), ("cifar", 1 / (1 + math.exp(-ratio)))]:
        loss = create("cdb_ce", COUNTS, tau="dynamic", dynamic_form=form)
        loss.on_validation_end(acc)
        d = (1 - acc) ** tau
        assert np.allclose(loss.cdb_weights.numpy(), d / d.sum() * 3, rtol=1e-6), form
    loss = create("cdb_ce", COUNTS, tau=1.0, eps=0.01)
    loss.on_validation_end(np.array([1.0, 0.5, 0.0]))
    assert np.allclose(loss.cdb_weights.numpy(), np.array([0.01, 0.5, 1.0]) / 1.51 * 3, rtol=1e-6)
    loss.on_validation_end(np.ones(3))
    assert torch.allclose(loss.cdb_weights, torch.ones(3))
