"""Temperature scaling fitted on validation logits (Guo et al. 2017, "On Calibration of Modern Neural Networks").

A network trained to a low training loss is over-confident; dividing its logits by a temperature
T > 1 softens the softmax without changing any argmax (scalar mode), so accuracy and balanced
accuracy stay exactly as they were and only the probabilities move. T minimises the validation NLL
of ``softmax(z / T)``.

Two forms (``posthoc.temperature`` picks one):

* ``scalar``: one T for every class, Guo et al.'s temperature scaling; what netcal's
  ``TemperatureScaling`` fits (netcal multiplies log-probabilities by a weight w = 1 / T, which is
  the same model: softmax is blind to the per-row constant between logits and log-probabilities).
* ``vector``: one T_c per class, ``z_c / T_c`` elementwise on the raw logits: Guo et al.'s
  "vector scaling" (diagonal W) *without* its bias, i.e. class-wise temperature scaling (Frenkel &
  Goldberger 2021, here fitted by NLL as Guo et al. fit theirs). netcal has no such form: its
  ``LogisticCalibration`` on multi-class input is vector scaling *with* a bias, on log-probabilities.
  Unlike the scalar form it can change the argmax, and it is not invariant to adding a constant to
  a logit row, so it must be applied to the same logits it was fitted on (the stored ones).

The fit is deterministic: float64 numpy, scipy's L-BFGS-B on u = log T (so T stays positive) with
the analytic gradient, T bounded to [0.01, 100]. NLL is convex in 1 / T, so the minimum is unique
when it is finite. A class absent from validation keeps T_c = 1 (nothing to fit it to).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from ..core.errors import ConfigError, DataError
from ..metrics.inputs import check_inputs, to_numpy

log = logging.getLogger("longtail")

MODES = ("scalar", "vector")
TEMPERATURE_BOUNDS = (1e-2, 1e2)


# ---------------------------------------------------------------------------------- public
def fit_temperature(logits: np.ndarray, targets: np.ndarray, mode: Literal["scalar", "vector"] = "scalar",
                    *, class_names: Sequence[str] | None = None) -> np.ndarray:
    """The temperature minimising validation NLL: a 0-d array (scalar) or shape (C,) (vector, 1 for classes absent from validation)."""
    if mode not in MODES:
        raise ConfigError(f"posthoc.temperature must be 'scalar' or 'vector', got {mode!r}")
    z, y = _check_logits(logits, targets)
    present = np.bincount(y, minlength=z.shape[1]) > 0
    _check_two_classes(present, class_names)
    if mode == "scalar":
        free = np.ones(1, dtype=bool)
    else:
        free = present
        for c in np.flatnonzero(~present):
            log.warning(f"vector temperature scaling: class {_label(int(c), class_names)} has no validation images; its temperature stays 1")
    u = _minimise_nll(z, y, mode, free)
    t = np.exp(u)
    _warn_degenerate(z, y, t[free])
    return np.asarray(float(t[0])) if mode == "scalar" else t


def apply_temperature(logits: np.ndarray, temperature: np.ndarray | float) -> np.ndarray:
    """``logits / T`` (T a scalar or one per class), in float64; softmax of the result is the calibrated probability."""
    z = to_numpy(logits).astype(np.float64, copy=False)
    t = _check_temperature(temperature, z.shape[-1])
    return z / t


def temperature_nll(logits: np.ndarray, targets: np.ndarray, temperature: np.ndarray | float) -> float:
    """Mean NLL of ``softmax(logits / T)``: the objective, for "NLL before / after" lines in the report."""
    z, y = _check_logits(logits, targets)
    t = _check_temperature(temperature, z.shape[1])
    u = np.log(np.broadcast_to(t, (z.shape[1],)))
    return _nll_grad(u, z, y, "vector")[0]


# ---------------------------------------------------------------------------------- checks
def _check_logits(logits: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validation logits and targets; non-finite logits would make the fitted T meaningless."""
    z = to_numpy(logits).astype(np.float64, copy=False)
    if z.ndim == 2 and not np.isfinite(z).all():
        raise DataError(f"validation logits contain {int((~np.isfinite(z)).sum())} NaN or inf values; the model diverged: "
                        "check training (e.g. lower the learning rate) before posthoc.temperature")
    return check_inputs(z, targets)


def _check_two_classes(present: np.ndarray, class_names: Sequence[str] | None) -> None:
    """One class alone gives NLL -> 0 as T -> 0: no temperature to find."""
    if present.sum() < 2:
        only = ", ".join(_label(int(c), class_names) for c in np.flatnonzero(present))
        raise DataError(f"temperature scaling needs validation images of at least 2 classes, the validation split has only class {only}; enlarge data.split.val or set posthoc.temperature: none")


def _check_temperature(temperature: np.ndarray | float, num_classes: int) -> np.ndarray:
    t = to_numpy(temperature).astype(np.float64)
    if t.shape not in ((), (1,), (num_classes,)):
        raise DataError(f"a temperature is a scalar or one value per class ({num_classes}), got shape {t.shape}; refit it on this run's validation logits")
    if not (np.isfinite(t).all() and (t > 0).all()):
        raise DataError(f"temperatures must be finite and positive, got {t.tolist()}; refit them on this run's validation logits")
    return t


def _label(c: int, class_names: Sequence[str] | None) -> str:
    return f"{c} ('{class_names[c]}')" if class_names is not None and c < len(class_names) else str(c)


def _warn_degenerate(z: np.ndarray, y: np.ndarray, t: np.ndarray) -> None:
    """Say when the NLL has no finite minimum: a separable validation split (T -> 0) or near-random logits (T at its upper bound)."""
    rows = np.arange(len(y))
    others = z.copy()
    others[rows, y] = -np.inf
    lo, hi = TEMPERATURE_BOUNDS
    if np.all(z[rows, y] > others.max(axis=1)):
        log.warning(f"every validation image is classified correctly with a margin, so the NLL keeps falling as T -> 0 and the fitted temperature "
                    f"({np.round(t, 4).tolist()}) only sharpens; use more validation images (data.split.val) or set posthoc.temperature: none")
    elif np.any(t >= hi * (1 - 1e-6)) or np.any(t <= lo * (1 + 1e-6)):
        log.warning(f"temperature scaling reached its bound {lo:g}..{hi:g} (T = {np.round(t, 4).tolist()}); the validation logits carry almost no "
                    "information about the labels, so the calibration is unreliable")


# ---------------------------------------------------------------------------------- the fit
def _minimise_nll(z: np.ndarray, y: np.ndarray, mode: str, free: np.ndarray) -> np.ndarray:
    """u = log T at the NLL minimum (full length C in vector mode, 1 in scalar), fixed entries left at 0."""
    from scipy.optimize import minimize  # scipy comes with scikit-learn; imported here to keep module import light

    n_u = 1 if mode == "scalar" else z.shape[1]
    u0 = np.zeros(n_u)
    bounds = [(math.log(TEMPERATURE_BOUNDS[0]), math.log(TEMPERATURE_BOUNDS[1]))] * int(free.sum())

    def objective(v: np.ndarray) -> tuple[float, np.ndarray]:
        u = u0.copy()
        u[free] = v
        value, grad = _nll_grad(u, z, y, mode)
        return value, grad[free]

    res = minimize(objective, u0[free], jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": 1000, "ftol": 1e-15, "gtol": 1e-10})
    u = u0.copy()
    u[free] = res.x
    return u


def _nll_grad(u: np.ndarray, z: np.ndarray, y: np.ndarray, mode: str) -> tuple[float, np.ndarray]:
    """NLL(u) of softmax(z * exp(-u)) and its gradient in u.

    With s = z * b, b = exp(-u): dNLL/ds_ic = (p_ic - [y_i = c]) / N and ds_ic/du_c = -s_ic, so
    dNLL/du_c = -mean_i (p_ic - [y_i = c]) s_ic; the scalar form sums that over c.
    """
    b = np.exp(-u)
    s = z * (b[0] if mode == "scalar" else b)
    m = s.max(axis=1, keepdims=True)
    e = np.exp(s - m)
    tot = e.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    value = float(np.mean(np.log(tot[:, 0]) + m[:, 0] - s[rows, y]))
    r = e / tot
    r[rows, y] -= 1.0
    per_class = -np.mean(r * s, axis=0)
    grad = np.array([per_class.sum()]) if mode == "scalar" else per_class
    return value, grad
