"""SECTIONS, in order, is the report: the builders' titles are the page's headings for a full run directory."""

from __future__ import annotations

import json
import re

from longtail.evaluation import report as R
from longtail.evaluation.report.sections import DECISION_SECTIONS, SECTIONS

from .test_report import make_run

PACE = {"kind": "spbl_pace", "pace": 0, "ratio": 0.0, "cnn_train_images": 10, "classifier_rows": 20, "val_balanced_accuracy": 0.5,
        "cnn_val_balanced_accuracy": 0.5, "cnn_seconds": 1.0, "feature_seconds": 1.0, "classifier_fit_seconds": 1.0,
        "selected_counts": [0] * 5, "complexity": [1] * 5, "cost": [1.0] * 5, "target_counts": [1] * 5, "delta": [0] * 5,
        "classifier_rows_per_class": [4] * 5, "classifier_weight_per_class": [1.0] * 5}


def test_section_order_matches_the_written_report(tmp_path) -> None:
    run_dir = make_run(tmp_path / "full", posthoc=True, decision=True)  # the files a finished, evaluated run leaves
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps(PACE) + "\n")
    run = R.load_run(run_dir)
    titles = [s.title for build in SECTIONS for s in build(run)]
    assert titles == [
        "Configuration", "Summary metrics", "Shot groups (test)", "Figures (test)", "ROC and precision-recall curves (test)",
        "Operating points (positive: mel<a> + nv)", "Metrics under the deployment prior", "Most confident errors (test)",
        "Training curves", "Per-class metrics (test)", "SPBL paces", "SPBL metric table",
    ]
    page = R.write_report(run_dir).read_text()
    assert re.findall(r"<h2>(.*?)</h2>", page) == [t.replace("<", "&lt;").replace(">", "&gt;") for t in titles]
    assert re.findall(r"^## (.*)$", (run_dir / "report.md").read_text(), re.MULTILINE) == titles
    assert [s.title for s in R.decision_sections(R.load_run(run_dir))] == titles[4:8]
    assert SECTIONS[4:8] == DECISION_SECTIONS


def test_older_results_get_a_note_and_only_the_sections_they_support(tmp_path) -> None:
    run_dir = make_run(tmp_path / "old")
    results = json.loads((run_dir / "results.json").read_text())
    del results["test"]["per_class"]
    (run_dir / "results.json").write_text(json.dumps(results))
    run = R.load_run(run_dir)
    assert [s.title for s in R.build_sections(run)] == ["Configuration", "Summary metrics", "ROC and precision-recall curves (test)", "Training curves"]
    assert run.notes[-1].startswith("The test metrics in results.json have no per-class table")
