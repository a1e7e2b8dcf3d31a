"""eval.subgroups and eval.aggregate_by wired into a run (issue #26): metadata columns of a CSV source,
per-group tables and per-case metrics in results.json and the report, bad columns refused before training."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import longtail
from longtail import rundir
from longtail.core.config import to_plain  # noqa: F401  (keeps the config import path warm for the CLI tests)
from longtail.data.sources.base import item_metadata
from longtail.evaluation.cohorts import case_metrics, subgroup_tables
from longtail.evaluation.lesions import aggregate_by_group
from longtail.evaluation.subgroups import age_bands

from ..robustness.common import cli, one_error, small, write_yaml


def _csv_run(tmp_path, **eval_section) -> dict:
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    root.mkdir()
    lines = ["image,label,sex,age,lesion"]
    for i in range(48):
        label = "a" if (i // 2) % 3 else "b"  # one label per lesion (two images each)
        base = 60 if label == "a" else 190
        Image.fromarray(np.clip(rng.normal(base, 30, (8, 8, 3)), 0, 255).astype(np.uint8)).save(root / f"{i}.png")
        lines.append(f"{i}.png,{label},{'male' if i % 2 else 'female'},{20 + (i * 7) % 70},L{i // 2}")
    (tmp_path / "meta.csv").write_text("\n".join(lines) + "\n")
    cfg = small(tmp_path, "cohorts", data={
        "source": {"name": "csv", "file": str(tmp_path / "meta.csv"), "root": str(root), "group_column": "lesion"},
        "split": {"val": 0.25, "test": 0.4}, "train_transforms": [], "batch_size": 8, "image_size": 8, "max_per_class": None,
    }, eval={"subgroup_min_count": 2, **eval_section})
    return cfg


def test_item_metadata_keeps_every_other_column():
    rows = [{"image": "a.png", "sex": "f", "age": "40"}, {"image": "b.png", "sex": "", "age": "71"}]
    assert item_metadata(["a.png", "b.png"], rows, ("image",)) == {"a.png": {"sex": "f", "age": "40"}, "b.png": {"sex": "", "age": "71"}}


def test_a_run_reports_subgroups_and_cases_from_the_csv_columns(tmp_path):
    result = longtail.train(_csv_run(tmp_path, subgroups=["sex", "age"], aggregate_by="lesion", positive=["b"]))
    run = result.run_dir
    res = json.loads((run / rundir.RESULTS).read_text())
    saved = rundir.load_predictions(run, "test")
    meta = {f"{i}.png": {"sex": "male" if i % 2 else "female", "age": str(20 + (i * 7) % 70), "lesion": f"L{i // 2}"} for i in range(48)}
    columns = {c: [meta[str(i)][c] for i in saved["ids"]] for c in ("sex", "age", "lesion")}
    cfg = longtail.load_config(run / rundir.CONFIG)
    expected = subgroup_tables(saved["logits"], saved["targets"], columns, res["class_names"], cfg.eval, "test")
    assert res["subgroups"] == {"split": "test", "tables": json.loads(json.dumps(expected))}
    sex, age = res["subgroups"]["tables"]
    assert {r["group"] for r in sex["groups"]} == set(columns["sex"])
    assert {r["group"] for r in age["groups"]} == set(age_bands(np.asarray(columns["age"], dtype=object)))
    assert sum(r["n"] for r in sex["groups"]) == len(saved["targets"])
    cases = res["cases"]
    _, _, lesions = aggregate_by_group(np.full((len(saved["ids"]), 2), 0.5), saved["targets"], columns["lesion"])
    assert cases["cases"] == len(lesions) < cases["images"] == len(saved["targets"])
    assert cases == {"split": "test", **json.loads(json.dumps(case_metrics(saved["logits"], saved["targets"], columns["lesion"],
                                                                           np.asarray(res["train_counts"]), res["class_names"], cfg.eval)))}
    report = (run / "report.md").read_text()
    assert "## Subgroups (test)" in report and "## Cases (test)" in report
    assert (run / "report_files" / "subgroups.png").is_file()


@pytest.mark.parametrize("section, message", [
    ({"subgroups": ["sexx"]}, "eval.subgroups: column 'sexx' is not in the data's metadata (columns: age, lesion, sex)"),
    ({"aggregate_by": "lesion_id"}, "eval.aggregate_by: column 'lesion_id' is not in the data's metadata"),
])
def test_a_column_the_data_does_not_have_is_refused_before_training(section, message, tmp_path, capsys):
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", _csv_run(tmp_path, **section)))
    assert code == 2
    one_error(err, message)
    assert not (tmp_path / "runs" / "cohorts").exists()


def test_a_source_without_metadata_is_refused(tmp_path, capsys):
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", small(tmp_path, "digits", eval={"subgroups": ["sex"]})))
    assert code == 2
    one_error(err, "eval.subgroups names metadata column 'sex', but this data source has no per-image metadata")
