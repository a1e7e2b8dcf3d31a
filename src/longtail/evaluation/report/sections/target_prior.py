"""The "Metrics under the deployment prior" section: what the test error rates mean at the class frequencies of use."""

from __future__ import annotations

from typing import Any

from .... import metrics as M
from ..run import Run
from ..section import Section


def target_prior_sections(run: Run) -> list[Section]:
    """The prior table and the metrics per prior column; none unless eval.target_prior was set."""
    decision = (run.results or {}).get("decision") or {}
    if not decision.get("target_prior"):
        return []
    return [target_prior_section(decision, run.class_names)]


def target_prior_section(decision: dict[str, Any], class_names: list[str] | None) -> Section:
    """Both priors per class, then accuracy, the positive set's rates and PPV / NPV per class under each prior column."""
    block = decision["target_prior"]
    columns = block["columns"]
    names = class_names or [str(c) for c in range(len(block["prior"]))]
    header = ["metric", *columns]
    body = [["accuracy", *(M.fmt(c["accuracy"]) for c in columns.values())]]
    positive = " + ".join(decision.get("positive") or [])
    if positive:
        for key, label in (("sensitivity", "sensitivity"), ("ppv", "PPV (precision)"), ("npv", "NPV")):
            body.append([f"{label}, {positive}", *(M.fmt((c.get("positive") or {}).get(key)) for c in columns.values())])
    for i, name in enumerate(names):
        body.append([f"PPV, {name}", *(M.fmt(c["per_class"][i]["ppv"]) for c in columns.values())])
        body.append([f"NPV, {name}", *(M.fmt(c["per_class"][i]["npv"]) for c in columns.values())])
    own = next((k for k in block if k.endswith("_prior") and k != "prior"), None)
    prior_rows = [[name, f"{block[own][i]:.4f}" if own else "-", f"{block['prior'][i]:.4f}"] for i, name in enumerate(names)]
    text = ("The test split's class frequencies against eval.target_prior (the frequencies expected where the model is used). "
            "Under a new prior, each class keeps the error rates the test split measured and only the class frequencies change, "
            "so accuracy = sum of prior x recall, and PPV / NPV follow Bayes' rule.")
    return Section("Metrics under the deployment prior", tables=[(["class", own.replace("_", " ") if own else "split prior", "target prior"], prior_rows), (header, body)], text=[text])
