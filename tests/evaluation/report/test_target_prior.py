"""The deployment-prior section: both priors per class, then accuracy, PPV and NPV under each prior column."""

from __future__ import annotations

from longtail.evaluation.report.sections.target_prior import target_prior_sections

from .common import hand_run


def column(accuracy: float, shift: float) -> dict:
    return {"accuracy": accuracy, "positive": {"sensitivity": 0.5, "ppv": 0.25 + shift, "npv": 0.99},
            "per_class": [{"ppv": 0.1 * c + shift, "npv": 0.9} for c in range(3)]}


BLOCK = {"test_prior": [0.5, 0.25, 0.25], "prior": [0.2, 0.3, 0.5], "columns": {"test split's prior": column(0.75, 0.0), "target prior": column(0.6, 0.05)}}


def test_prior_and_metric_tables(tmp_path) -> None:
    [section] = target_prior_sections(hand_run(tmp_path, decision={"positive": ["tail"], "target_prior": BLOCK}))
    assert section.title == "Metrics under the deployment prior"
    (prior_header, prior_rows), (header, rows) = section.tables
    assert prior_header == ["class", "test prior", "target prior"]
    assert prior_rows == [["head", "0.5000", "0.2000"], ["mid", "0.2500", "0.3000"], ["tail", "0.2500", "0.5000"]]
    assert header == ["metric", "test split's prior", "target prior"]
    assert rows[0] == ["accuracy", "0.7500", "0.6000"]
    assert rows[2] == ["PPV (precision), tail", "0.2500", "0.3000"]
    assert [r[0] for r in rows[4:]] == ["PPV, head", "NPV, head", "PPV, mid", "NPV, mid", "PPV, tail", "NPV, tail"]
    assert rows[8] == ["PPV, tail", "0.2000", "0.2500"]


def test_without_positive_set_or_prior(tmp_path) -> None:
    [section] = target_prior_sections(hand_run(tmp_path, decision={"target_prior": BLOCK}))
    assert [r[0] for r in section.tables[1][1]][:2] == ["accuracy", "PPV, head"]
    assert target_prior_sections(hand_run(tmp_path, decision={"operating_points": []})) == []
