"""The clinical trust layer of a run: what is fitted on validation, and what it shows on test.

Fitted on validation only (``fit``) and stored in the run's ``trust.json``: the temperature
(``posthoc.temperature``), the conformal thresholds (``eval.conformal``) and the abstention threshold
(``eval.selective``). ``summarise`` reads them on a split: calibration scores before and after the
temperature, conformal coverage per class and set sizes, the risk-coverage curve with its AURC and
the chosen threshold's coverage and balanced accuracy. ``predict`` applies the same fit per image
(:func:`calibrated_probs`, :func:`image_sets`, :func:`abstains`), so a deployed model answers exactly
as the report says it does. Every input here is a logit array after the run's post-hoc correction.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.schema import EvalConfig
from ..metrics.calibration_scores import calibration_scores
from ..metrics.inputs import softmax
from .calibration_fit import apply_temperature, fit_temperature
from .conformal import ConformalFit, coverage_report, fit_conformal, prediction_sets
from .selective import accept, aurc, choose_threshold, risk_coverage, selective_summary

#: points of the risk-coverage curve kept for the report's plot (the AURC uses every image)
CURVE_POINTS = 101


def fit(val_logits: np.ndarray, val_targets: np.ndarray, class_names: list[str], temperature: str, eval_cfg: EvalConfig) -> dict[str, Any]:
    """What the run stores (JSON-ready): the temperature, the conformal fit, the abstention threshold."""
    labelled = val_targets >= 0
    z, y = np.asarray(val_logits)[labelled], np.asarray(val_targets)[labelled]
    out: dict[str, Any] = {}
    if temperature != "none":
        t = fit_temperature(z, y, temperature, class_names=class_names)  # type: ignore[arg-type]
        out["temperature"] = {"mode": temperature, "value": t.tolist()}
    probs = calibrated_probs(z, out)
    if eval_cfg.conformal is not None:
        c = eval_cfg.conformal
        out["conformal"] = fit_conformal(probs, y, c.alpha, c.mode, class_names).to_dict()
    if eval_cfg.selective is not None:
        s = eval_cfg.selective
        coverage = s.target_coverage if s.target_coverage is not None or s.target_risk is not None else s.DEFAULT_COVERAGE
        threshold = choose_threshold(probs, y, s.score, target_coverage=coverage, target_risk=s.target_risk)
        out["selective"] = {"score": s.score, "threshold": threshold, "target_coverage": coverage, "target_risk": s.target_risk}
    return out


def calibrated_probs(logits: np.ndarray, fitted: dict[str, Any]) -> np.ndarray:
    """softmax(logits / T) with the stored temperature (T = 1 when none was fitted)."""
    t = fitted.get("temperature")
    z = apply_temperature(logits, np.asarray(t["value"])) if t else np.array(logits, dtype=np.float64)  # a copy: softmax works in place
    return softmax(z)


def image_sets(probs: np.ndarray, fitted: dict[str, Any]) -> np.ndarray | None:
    """The conformal prediction set of each image as a bool (N, C) array (None without eval.conformal)."""
    if "conformal" not in fitted:
        return None
    return prediction_sets(probs, ConformalFit.from_dict(fitted["conformal"]))


def abstains(probs: np.ndarray, fitted: dict[str, Any]) -> np.ndarray | None:
    """True where the model abstains (confidence below the validation threshold); None without eval.selective."""
    s = fitted.get("selective")
    return None if s is None else ~accept(probs, float(s["threshold"]), s["score"])


def summarise(logits: np.ndarray, targets: np.ndarray, fitted: dict[str, Any], class_names: list[str]) -> dict[str, Any]:
    """One labelled split under the stored fit: calibration before/after, conformal coverage, selective prediction."""
    labelled = targets >= 0
    z, y = np.asarray(logits, dtype=np.float64)[labelled], np.asarray(targets)[labelled]
    raw = softmax(z.copy())
    probs = calibrated_probs(z, fitted)
    out: dict[str, Any] = {"calibration": {"before": calibration_scores(raw, y)}}
    if "temperature" in fitted:
        out["calibration"]["after"] = calibration_scores(probs, y)
        out["calibration"]["temperature"] = fitted["temperature"]
    if "conformal" in fitted:
        report = coverage_report(image_sets(probs, fitted), y, class_names)
        out["conformal"] = {**report, "alpha": fitted["conformal"]["alpha"], "mode": fitted["conformal"]["mode"],
                            "guaranteed": fitted["conformal"]["guaranteed"]}
    out["selective"] = _selective(probs, y, fitted.get("selective"))
    return out


def _selective(probs: np.ndarray, y: np.ndarray, chosen: dict[str, Any] | None) -> dict[str, Any]:
    """AURC (plain and balanced error) by max probability and by margin, a thinned curve, the chosen threshold's outcome."""
    out: dict[str, Any] = {}
    for score in ("max_prob", "margin"):
        curve = risk_coverage(probs, y, score)  # type: ignore[arg-type]
        keep = np.unique(np.linspace(0, len(y) - 1, min(CURVE_POINTS, len(y))).round().astype(int))
        out[score] = {
            "aurc": aurc(curve, "error"), "aurc_balanced": aurc(curve, "balanced"),
            "curve": {k: [float(v) for v in curve[k][keep]] for k in ("coverage", "risk", "error", "balanced_accuracy")},
        }
    if chosen is not None:
        out["chosen"] = {**selective_summary(probs, y, float(chosen["threshold"]), chosen["score"]),
                         "score": chosen["score"], "target_coverage": chosen["target_coverage"], "target_risk": chosen["target_risk"]}
    return out
