"""The "Operating points" section: thresholds on P(positive) chosen on validation for target specificities.

The decision block of results.json (written by ``longtail eval`` when a positive class set is
configured) holds the rows; this section only lays them out.
"""

from __future__ import annotations

from typing import Any

from .... import metrics as M
from ..run import Run
from ..section import Section


def operating_point_sections(run: Run) -> list[Section]:
    """The operating-point table; the reason the decision tables were skipped becomes a page note."""
    decision = (run.results or {}).get("decision") or {}
    if decision.get("note"):
        run.notes.append(f"Decision tables skipped: {decision['note']}")
    if not decision.get("operating_points"):
        return []
    return [operating_point_section(decision)]


def operating_point_section(decision: dict[str, Any]) -> Section:
    """Validation (and, when measured, test) sensitivity / specificity at each target specificity's threshold."""
    rows = decision["operating_points"]
    positive = " + ".join(decision.get("positive") or [])
    on_test = "test_sensitivity" in rows[0]
    header = ["target specificity", "threshold on P(positive)", "validation sensitivity", "validation specificity"]
    header += ["test sensitivity", "test specificity"] if on_test else []
    body = [[f"{r['target_specificity']:.2f}", f"{r['threshold']:.4f}", M.fmt(r["val_sensitivity"]), M.fmt(r["val_specificity"]),
             *([M.fmt(r["test_sensitivity"]), M.fmt(r["test_specificity"])] if on_test else [])] for r in rows]
    text = (f"Positive: {positive} (the summed probability of these classes is the score). Each threshold is the one with the highest "
            "validation sensitivity whose validation specificity reaches the target; the test columns read the same threshold on test.")
    return Section(f"Operating points (positive: {positive})", tables=[(header, body)], text=[text])
