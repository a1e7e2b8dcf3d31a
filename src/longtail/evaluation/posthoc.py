"""Post-hoc prior corrections of a trained classifier, with their strength chosen on validation.

Two corrections for the label-prior bias a long-tailed training set leaves in the classifier:

* **logit adjustment** (Menon et al., ICLR 2021): ``z_c - tau * log pi_c`` with ``pi`` the
  training class prior (implemented as ``log(C pi_c)``, the same up to a per-row constant). ``tau = 1`` is the Bayes-optimal correction when the test prior is
  uniform; ``tau = 0`` leaves the logits unchanged.
* **tau-normalisation** (Kang et al., ICLR 2020): rescale each class weight vector of the
  linear head to ``W_c / ||W_c||^tau``, undoing the larger norms that head classes acquire. The
  head's bias is either left out (``bias: drop``, what classifier-balancing's ``tau_norm.py``
  computes: ``features @ pnorm(W, tau).T``) or added unchanged (``bias: keep``, longtail's default,
  under which tau 0 is the plain head); ``posthoc.json`` stores which (absent: keep).

Neither has a trained parameter: only ``tau``, picked by :func:`select_tau` on the validation
split (never on test; ties go to the smallest tau, i.e. the least correction). The engine stores
the choice in ``run_dir/posthoc.json`` (see :func:`fit_posthoc`) and ``predict`` applies it with
:func:`apply_posthoc`. Functions accept numpy arrays or torch tensors and return the same type.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import metrics as M
from ..core.errors import ConfigError, LongtailError, did_you_mean

POSTHOC_FILE = "posthoc.json"
#: the metric that chooses logit adjustment toward eval.target_prior: validation accuracy re-weighted to that prior
TARGET_PRIOR_METRIC = "target_prior_accuracy"
LOWER_IS_BETTER = frozenset({"ece"})

ArrayLike = Any  # np.ndarray | torch.Tensor


def _is_torch(x: Any) -> bool:
    return hasattr(x, "detach") and hasattr(x, "device")


def log_prior(train_counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """``log(C * prior)``: the log training prior relative to a uniform one (0 for balanced data).

    Measured against the uniform prior rather than as plain ``log prior`` so that a balanced
    training set gives exactly the identity; the two differ by a constant per row, which changes
    no probability or prediction. Every class must have been seen in training.
    """
    counts = M.to_numpy(train_counts).astype(np.float64)
    if counts.ndim != 1 or len(counts) < 2:
        raise LongtailError(f"train_counts must be a vector with one count per class, got shape {counts.shape}")
    if (counts <= 0).any():
        missing = int(np.flatnonzero(counts <= 0)[0])
        raise LongtailError(f"class {missing} has no training images, so its prior is 0 and logit adjustment is undefined; add images or drop the class")
    return np.log(len(counts) * counts / counts.sum())


#: the prior a model's raw logits carry: ``train`` (a CE-trained model) or ``uniform`` (trained on
#: ``z + log prior``: balanced softmax, LADE's PriorCE), which adjustment toward a target only adds to
SOURCE_PRIORS = ("train", "uniform")


def prior_shift(train_counts: Sequence[int] | np.ndarray, target_prior: Sequence[float] | None = None, source: str = "train") -> np.ndarray:
    """``log(C * source prior) - log(C * target prior)``: what logit adjustment subtracts per unit of tau.

    The source prior is the training prior (``source="train"``) or uniform (``"uniform"``: the
    logits already estimate the balanced posterior, so only ``log(C * target)`` is added, LADE's
    test-time rule); the target is uniform when ``target_prior`` is None. ``train`` with no target
    is :func:`log_prior`."""
    if source not in SOURCE_PRIORS:
        raise LongtailError(f"posthoc: the logits' prior '{source}' is not one of {', '.join(SOURCE_PRIORS)}; fix posthoc.logit_adjust_from or posthoc.json")
    shift = log_prior(train_counts)
    if source == "uniform":
        shift = np.zeros_like(shift)
    if target_prior is None:
        return shift
    target = np.asarray(target_prior, dtype=np.float64)
    if target.shape != shift.shape or (target <= 0).any():
        raise LongtailError(f"target prior {list(target)} must have one positive frequency per class ({len(shift)}); fix eval.target_prior")
    return shift - np.log(len(target) * target / target.sum())


def logit_adjust(
    logits: ArrayLike, train_counts: Sequence[int] | np.ndarray, tau: float, target_prior: Sequence[float] | None = None, source: str = "train"
) -> ArrayLike:
    """``logits - tau * (log(C * prior) - log(C * target))``: move decisions from the training prior towards
    ``target_prior`` (a uniform one when None, Menon et al.'s balanced-error setting). With
    ``source="uniform"`` the logits' prior is uniform: ``logits + tau * log(C * target)``."""
    prior = prior_shift(train_counts, target_prior, source)
    if logits.shape[-1] != len(prior):
        raise LongtailError(f"logits have {logits.shape[-1]} classes but train_counts has {len(prior)}; use the counts of the run that produced the logits")
    if _is_torch(logits):
        import torch

        return logits - tau * torch.as_tensor(prior, dtype=logits.dtype, device=logits.device)
    return np.asarray(logits) - tau * prior


#: what tau-norm does with the head's bias: drop = classifier-balancing's tau_norm.py, keep = add it unchanged
TAU_NORM_BIAS = ("drop", "keep")
#: the bias mode of a posthoc.json tau_norm entry written without one (before the option existed)
TAU_NORM_BIAS_UNSET = "keep"


def tau_norm_bias_mode(entry: dict[str, Any] | None) -> str:
    """The bias mode a stored ``tau_norm`` entry asks for (``keep`` when it names none); a one-line error otherwise."""
    mode = (entry or {}).get("bias", TAU_NORM_BIAS_UNSET)
    if mode not in TAU_NORM_BIAS:
        raise LongtailError(f"posthoc.json: tau_norm bias '{mode}' is not one of {', '.join(TAU_NORM_BIAS)}; rerun `longtail eval` or fix the file")
    return str(mode)


def tau_norm_logits(features: ArrayLike, weight: ArrayLike, bias: ArrayLike | None, tau: float, bias_mode: str = "keep") -> ArrayLike:
    """Logits of a linear head whose class weights are tau-normalised (Kang et al. 2020).

    ``features`` N x D, ``weight`` C x D (the head's ``weight``), ``bias`` C or None. With
    ``bias_mode="keep"`` the bias is added unchanged (tau 0 then gives the plain head's logits);
    with ``"drop"`` it is left out: ``features @ (W_c / ||W_c||^tau).T``, what classifier-balancing's
    ``tau_norm.py`` computes although its head (``nn.Linear``) has a trained bias.
    """
    if bias_mode not in TAU_NORM_BIAS:
        raise ConfigError(f"posthoc.tau_norm_bias '{bias_mode}' is not one of {', '.join(TAU_NORM_BIAS)}")
    if weight.shape[1] != features.shape[1]:
        raise LongtailError(f"features have {features.shape[1]} dimensions but the head weight expects {weight.shape[1]}; pass the features of the same model")
    from ..models.heads import tau_normalize_weight  # imported here: the models package is heavy

    w = tau_normalize_weight(weight, tau)
    if _is_torch(features):
        out = features @ w.to(features.dtype).T
    else:
        out = np.asarray(features, dtype=np.float64) @ np.asarray(w).T
    if bias is not None and bias_mode == "keep":
        out = out + (bias.to(out.dtype) if _is_torch(out) else np.asarray(bias, dtype=np.float64))
    return out


# ------------------------------------------------------------------------------- selection
def _label_metrics() -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    """Metrics of hard predictions that can be computed without the full :func:`metrics.compute`."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    return {
        "accuracy": lambda y, p: float(accuracy_score(y, p)),
        "balanced_accuracy": lambda y, p: float(balanced_accuracy_score(y, p)),
        "macro_recall": lambda y, p: float(balanced_accuracy_score(y, p)),
        "macro_f1": lambda y, p: float(f1_score(y, p, labels=np.unique(y), average="macro", zero_division=0)),
    }


def score(logits: ArrayLike, targets: ArrayLike, metric: str, target_prior: np.ndarray | None = None) -> float | None:
    """One metric of ``logits`` (fast path for label metrics, else :func:`metrics.compute`)."""
    if metric == TARGET_PRIOR_METRIC:
        from .decision import prior_accuracy

        z, y = M.check_inputs(logits, targets)
        return prior_accuracy(z, y, target_prior)
    fast = _label_metrics()
    if metric in fast:
        z, y = M.check_inputs(logits, targets)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fast[metric](y, z.argmax(axis=1))
    valid = [k for k, _ in M.SUMMARY_METRICS]
    if metric not in valid:
        raise ConfigError(f"posthoc.metric: unknown metric '{metric}'{did_you_mean(metric, valid)}; valid: {', '.join(valid)}")
    return M.compute(logits, targets)[metric]


def select_tau(
    grid: Sequence[float],
    logits_fn: Callable[[float], ArrayLike],
    val_targets: ArrayLike,
    metric: str = "balanced_accuracy",
    target_prior: np.ndarray | None = None,
) -> tuple[float, dict[float, float | None]]:
    """The tau of ``grid`` whose validation logits ``logits_fn(tau)`` score best on ``metric``.

    Returns ``(best_tau, {tau: score})``; higher is better except for ECE. Ties (and undefined scores) resolve to the smallest
    tau, the weakest correction. ``val_targets`` must be validation labels: choosing tau on
    test is the leak several long-tail papers were caught in.
    """
    taus = sorted({float(t) for t in grid})
    if not taus:
        raise ConfigError("posthoc.grid is empty; give at least one tau, e.g. [0.0, 0.5, 1.0]")
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    scores: dict[float, float | None] = {}
    best_tau, best = taus[0], -math.inf
    for tau in taus:
        value = score(logits_fn(tau), val_targets, metric, target_prior)
        scores[tau] = value
        if value is not None and not math.isnan(value) and sign * value > best:
            best_tau, best = tau, sign * value
    return best_tau, scores


def fit_posthoc(
    val_logits: ArrayLike,
    val_targets: ArrayLike,
    train_counts: Sequence[int] | np.ndarray,
    *,
    logit_adjustment: bool = False,
    tau_norm: bool = False,
    grid: Sequence[float] = tuple(round(0.1 * i, 2) for i in range(21)),
    metric: str = "balanced_accuracy",
    val_features: ArrayLike | None = None,
    head_weight: ArrayLike | None = None,
    head_bias: ArrayLike | None = None,
    target_prior: Sequence[float] | None = None,
    tau_norm_bias: str = "keep",
    source_prior: str = "train",
) -> dict[str, Any]:
    """Choose the enabled corrections on validation; the dict is what ``posthoc.json`` stores.

    With both enabled, tau-norm is chosen first and logit adjustment on top of the tau-normed
    logits (a sequential search over ``len(grid)`` + ``len(grid)`` values, not the full grid
    product). ``{}`` when nothing is enabled. With ``target_prior``, logit adjustment moves toward
    that prior and its tau is chosen by the validation accuracy re-weighted to it
    (``target_prior_accuracy``, see :mod:`longtail.evaluation.decision`), which is stored with the choice.
    ``tau_norm_bias`` (``drop`` or ``keep``, see :func:`tau_norm_logits`) is stored in the tau-norm
    entry as ``bias``, so :func:`apply_posthoc` and the export apply the same form. ``source_prior``
    ``uniform`` (a model whose raw logits carry no training prior, e.g. LADE) needs ``target_prior``:
    the adjustment adds ``tau * log(C * target)``; it is stored as ``source_prior`` in the entry.
    """
    out: dict[str, Any] = {}
    current = val_logits
    if tau_norm:
        if val_features is None or head_weight is None:
            raise LongtailError("tau-norm needs the validation features and the linear head's weight; use a linear/cosine head model")
        bias = tau_norm_bias
        tau, scores = select_tau(grid, lambda t: tau_norm_logits(val_features, head_weight, head_bias, t, bias), val_targets, metric)
        out["tau_norm"] = {**_choice(tau, scores, metric), "bias": bias}
        current = tau_norm_logits(val_features, head_weight, head_bias, tau, bias)
    if logit_adjustment:
        base = current
        if target_prior is None:
            if source_prior != "train":
                raise ConfigError("posthoc.logit_adjust_from: uniform logits need a target to adjust toward: set eval.target_prior and posthoc.target_prior: true")
            tau, scores = select_tau(grid, lambda t: logit_adjust(base, train_counts, t), val_targets, metric)
            out["logit_adjust"] = _choice(tau, scores, metric)
        else:
            prior = np.asarray(target_prior, dtype=np.float64)
            tau, scores = select_tau(grid, lambda t: logit_adjust(base, train_counts, t, prior, source_prior), val_targets, TARGET_PRIOR_METRIC, prior)
            out["logit_adjust"] = {**_choice(tau, scores, TARGET_PRIOR_METRIC), "target_prior": [float(p) for p in prior]}
            if source_prior != "train":
                out["logit_adjust"]["source_prior"] = source_prior
    return out


def _choice(tau: float, scores: dict[float, float | None], metric: str) -> dict[str, Any]:
    return {"tau": tau, "metric": metric, "val_score": scores[tau], "grid": list(scores), "val_scores": list(scores.values())}


def apply_posthoc(
    logits: ArrayLike,
    features: ArrayLike | None,
    posthoc: dict[str, Any] | None,
    head_weight: ArrayLike | None = None,
    head_bias: ArrayLike | None = None,
    train_counts: Sequence[int] | np.ndarray | None = None,
) -> ArrayLike:
    """Apply the corrections stored in ``posthoc.json`` (tau-norm first, then logit adjustment).

    The tau-norm entry's ``bias`` (``drop`` / ``keep``) says whether ``head_bias`` is added; an
    entry without one (written before the option) keeps it, as such runs were scored.
    """
    if not posthoc:
        return logits
    unknown = set(posthoc) - {"tau_norm", "logit_adjust"}
    if unknown:
        raise LongtailError(f"posthoc.json has unknown entries {sorted(unknown)}; expected 'tau_norm' and/or 'logit_adjust' (rerun `longtail eval`)")
    out = logits
    if "tau_norm" in posthoc:
        if features is None or head_weight is None:
            raise LongtailError("this run uses tau-norm: pass the features and the head weight (predict with the run's model)")
        entry = posthoc["tau_norm"]
        out = tau_norm_logits(features, head_weight, head_bias, float(entry["tau"]), tau_norm_bias_mode(entry))
    if "logit_adjust" in posthoc:
        if train_counts is None:
            raise LongtailError("this run uses logit adjustment: pass the training class counts stored in results.json")
        entry = posthoc["logit_adjust"]
        out = logit_adjust(out, train_counts, float(entry["tau"]), entry.get("target_prior"), entry.get("source_prior", "train"))
    return out


def balanced_prior_metrics(
    logits: ArrayLike,
    targets: ArrayLike,
    train_counts: Sequence[int] | np.ndarray,
    tau: float = 1.0,
    **compute_kwargs: Any,
) -> dict[str, Any]:
    """Test metrics as they are and under a balanced class prior.

    "Balanced prior" here means the *decisions* are corrected for a uniform target prior: the
    logits are logit-adjusted with ``tau`` (1 = Bayes-optimal for a uniform prior; pass the tau
    chosen on validation). The test samples themselves are not reweighted; the prior-free
    view of the test set is already given by the macro metrics (balanced accuracy = accuracy
    under a uniform test prior). Returns ``{"tau", "as_is", "balanced_prior"}``.
    """
    kwargs = {"train_counts": train_counts, **compute_kwargs}
    return {
        "tau": float(tau),
        "as_is": M.compute(logits, targets, **kwargs),
        "balanced_prior": M.compute(logit_adjust(M.to_numpy(logits), train_counts, tau), targets, **kwargs),
    }


# -------------------------------------------------------------------------------------- io
def save_posthoc(run_dir: str | Path, posthoc: dict[str, Any]) -> Path:
    """Write ``run_dir/posthoc.json`` atomically (a kill leaves the old file or the new one)."""
    from ..rundir import atomic_write_bytes  # loads torch: only when writing

    path = Path(run_dir) / POSTHOC_FILE
    atomic_write_bytes(path, (json.dumps(posthoc, indent=2) + "\n").encode())
    return path


def load_posthoc(run_dir: str | Path) -> dict[str, Any]:
    """``run_dir/posthoc.json`` as a dict, ``{}`` when the run has none."""
    path = Path(run_dir) / POSTHOC_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise LongtailError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); delete it and rerun `longtail eval` to recompute") from None
    if not isinstance(data, dict):
        raise LongtailError(f"{path}: expected a JSON object; delete it and rerun `longtail eval`")
    return data
