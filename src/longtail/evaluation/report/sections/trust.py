"""The "Trust" sections: calibration before and after temperature scaling, conformal prediction sets, selective prediction.

results.json's ``trust`` block (fitted on validation, read on test; ``evaluation/trust.py``) holds the
numbers; these sections only lay them out.
"""

from __future__ import annotations

from typing import Any

from .... import metrics as M
from ..figures import figure_risk_coverage
from ..run import Run
from ..section import Section

CALIBRATION_ROWS = (("ece", "ECE (15 equal-width bins)"), ("adaptive_ece", "adaptive ECE (15 equal-mass bins)"),
                    ("brier", "Brier score"), ("nll", "negative log-likelihood"))


def trust_sections(run: Run) -> list[Section]:
    """Calibration, conformal and selective sections of the test split (validation when the run has no labelled test)."""
    trust = (run.results or {}).get("trust") or {}
    if trust.get("note"):
        run.notes.append(f"Trust tables skipped: {trust['note']}")
    split = "test" if "test" in trust else "val" if "val" in trust else None
    if split is None:
        return []
    block = trust[split]
    out = [calibration_section(block["calibration"], split)]
    if "conformal" in block:
        out.append(conformal_section(block["conformal"], split))
    if block.get("selective"):
        out.append(selective_section(block["selective"], split))
    return out


def calibration_section(cal: dict[str, Any], split: str) -> Section:
    after = cal.get("after")
    header = ["metric", "before", *(["after temperature scaling"] if after else [])]
    body = [[label, M.fmt(cal["before"][key]), *([M.fmt(after[key])] if after else [])] for key, label in CALIBRATION_ROWS]
    if after:
        t = cal["temperature"]
        value = f"{t['value']:.3f}" if isinstance(t["value"], (int, float)) else ", ".join(f"{v:.3f}" for v in t["value"])
        text = (f"Temperature scaling ({t['mode']}, T = {value}) was fitted on validation by minimising the negative log-likelihood "
                f"and is read here on {split}; predict, eval and export apply it.")
    else:
        text = "No temperature was fitted (posthoc.temperature: none); set it to scalar or vector to calibrate the probabilities on validation."
    return Section(f"Calibration ({split})", tables=[(header, body)], text=[text])


def conformal_section(conf: dict[str, Any], split: str) -> Section:
    header = ["class", f"images ({split})", "coverage", "mean set size", "guarantee (enough validation images)"]
    guaranteed = conf.get("guaranteed") or [None] * len(conf["per_class"])
    body = [[r["class"], M.fmt(r["count"]), M.fmt(r["coverage"]), M.fmt(r["mean_set_size"], 2), {True: "yes", False: "no"}.get(g, "n/a")]
            for r, g in zip(conf["per_class"], guaranteed)]
    body.append(["all", M.fmt(conf["n"]), M.fmt(conf["coverage"]), M.fmt(conf["mean_set_size"], 2), ""])
    text = (f"Split conformal prediction sets ({conf['mode'].replace('_', '-')}, LAC score 1 - p), calibrated on validation for "
            f"{1 - conf['alpha']:.0%} coverage and read on {split}: a set holds every class whose score is below the validation threshold. "
            f"Empty sets: {M.fmt(conf['empty_share'])} of the images.")
    return Section(f"Prediction sets (alpha {conf['alpha']:g})", tables=[(header, body)], text=[text])


def selective_section(sel: dict[str, Any], split: str) -> Section:
    header = ["ranked by", "AURC (top-1 error)", "AURC (balanced error)"]
    body = [[label, M.fmt(sel[key]["aurc"]), M.fmt(sel[key]["aurc_balanced"])] for key, label in (("max_prob", "max probability"), ("margin", "margin"))]
    tables = [(header, body)]
    chosen = sel.get("chosen")
    text = [f"Risk-coverage on {split}: the model answers its most confident images first; AURC is the mean risk over every coverage."]
    if chosen:
        target = f"coverage {chosen['target_coverage']:g}" if chosen.get("target_coverage") is not None else f"balanced error {chosen['target_risk']:g}"
        tables.append((["threshold (validation)", "target", "coverage", "abstained", "balanced accuracy", "accuracy"],
                       [[M.fmt(chosen["threshold"]), target, M.fmt(chosen["coverage"]), M.fmt(chosen["abstained"]),
                         M.fmt(chosen["balanced_accuracy"]), M.fmt(chosen["accuracy"])]]))
        text.append(f"The threshold on the {chosen['score'].replace('_', ' ')} was chosen on validation for the target and is read on {split}; "
                    "predict marks the images below it as abstentions.")
    figure = figure_risk_coverage(sel)
    return Section(f"Selective prediction ({split})", tables=tables, figures=[("risk_coverage", figure)] if figure else [], text=text)
