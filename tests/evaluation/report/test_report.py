"""Run reports and comparisons built from fake run directories written in tmp_path."""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from longtail import metrics as M
from longtail.core.errors import LongtailError
from longtail.evaluation import report as R

COUNTS = [300, 120, 50, 15, 5]
NAMES = ["mel<a>", "nv", "bcc", "akiec", "df"]


def make_run(
    root: Path,
    *,
    test: bool = True,
    results: bool = True,
    posthoc: bool = False,
    loss: str = "ce",
    seed: int = 0,
    num_classes: int = 5,
    decision: bool = False,
) -> Path:
    """A run directory laid out as docs/architecture.md says, with random but learnable logits.

    ``decision``: results.json also holds the decision block (operating points for positive 'mel<a>' + 'nv',
    a deployment prior) and predictions/errors.npz the thumbnails of the most confident errors, as finalize writes them."""
    rng = np.random.default_rng(seed)
    counts = COUNTS if num_classes == 5 else [int(500 * 0.9**c) + 1 for c in range(num_classes)]
    names = NAMES if num_classes == 5 else [f"c{c}" for c in range(num_classes)]
    (root / "predictions").mkdir(parents=True)
    config = {
        "name": root.name,
        "seed": seed,
        "data": {"source": {"name": "ham10000", "root": "/data/ham"}, "image_size": 64},
        "model": {"name": "resnet32", "head": "linear", "pretrained": False},
        "loss": {"name": loss},
        "sampler": {"name": "instance"},
        "method": {"name": "standard"},
        "stages": [{"name": "main", "epochs": 3}, {"name": "crt", "epochs": 2, "sampler": {"name": "class_balanced"}, "freeze_backbone": True}],
        "optimizer": {"name": "sgd", "lr": 0.1, "weight_decay": 0.0005},
        "schedule": {"name": "cosine", "warmup_epochs": 1},
        "train": {"select_metric": "balanced_accuracy"},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    with open(root / "metrics.jsonl", "w") as f:
        for e in range(5):
            row = {"epoch": e, "stage": "main" if e < 3 else "crt", "train_loss": 2 - 0.3 * e, "lr": 0.1 * 0.5**e,
                   "val_balanced_accuracy": 0.3 + 0.1 * e, "val_accuracy": 0.4 + 0.1 * e, "val_loss": 1.9 - 0.2 * e, "seconds": 1.5}
            f.write(json.dumps(row) + "\n")
    out: dict = {"train_counts": counts, "class_names": names}
    arrays: dict = {}
    for split, n in (("val", 60), ("test", 120)):
        if split == "test" and not test:
            out["test"] = None
            continue
        y = rng.integers(0, num_classes, n)
        z = rng.normal(size=(n, num_classes))
        z[np.arange(n), y] += 1.5
        np.savez(root / "predictions" / f"{split}.npz", logits=z, targets=y, ids=np.array([f"img{i}" for i in range(n)]))
        arrays[split] = (z, y)
        out[split] = M.compute(z, y, counts, names)
        if split == "test" and posthoc:
            z2 = z - np.log(np.asarray(counts) / sum(counts))
            out["test_posthoc"] = M.compute(z2, y, counts, names)
            (root / "posthoc.json").write_text(json.dumps({"logit_adjust": {"tau": 1.0, "metric": "balanced_accuracy", "val_score": 0.61}}))
    if decision:
        from longtail.evaluation.decision import summarise
        from longtail.evaluation.gallery import save_errors

        (zv, yv), (zt, yt) = arrays["val"], arrays["test"]
        adjusted = zt - np.log(np.asarray(counts) / sum(counts)) if posthoc else None
        prior = [0.3, 0.4, 0.1, 0.1, 0.1] if num_classes == 5 else [1 / num_classes] * num_classes
        out["decision"] = summarise(zv, yv, zt, yt, names, positive=[names[0], names[1]], target_prior=prior,
                                    adjusted_test_logits=adjusted, adjusted_label="target prior, after the post-hoc correction")
        images = [(torch.from_numpy(rng.integers(0, 256, (3, 45, 60), dtype=np.uint8)), int(c)) for c in yt]
        save_errors(root / "predictions", images, zt, yt, [f"img{i}" for i in range(len(yt))])
    if results:
        (root / "results.json").write_text(json.dumps(out))
    return root


def embedded_images(page: str) -> list[Image.Image]:
    images = []
    for data in re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page):
        img = Image.open(io.BytesIO(base64.b64decode(data)))
        img.load()
        images.append(img)
    return images


def test_report_of_a_complete_run(tmp_path) -> None:
    run = make_run(tmp_path / "ldam_run", posthoc=True)
    path = R.write_report(run)
    page = path.read_text()
    assert path == run / "report.html"
    images = embedded_images(page)
    assert len(images) == 5  # counts+recall, confusion, reliability, ROC/PR, curves
    assert all(img.width > 100 and img.height > 100 for img in images)
    for img in images:  # not blank: more than a handful of colours
        assert len(img.convert("RGB").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 10
    results = json.loads((run / "results.json").read_text())
    test = results["test"]
    assert "mel&lt;a&gt;" in page and "mel<a>" not in page  # class names are escaped
    for title in ("Configuration", "Summary metrics", "Shot groups (test)", "Figures (test)", "Training curves", "Per-class metrics (test)"):
        assert f"<h2>{title}</h2>" in page
    assert f"<td>balanced accuracy</td><td>{M.fmt(test['balanced_accuracy'])}</td><td>{M.fmt(results['test_posthoc']['balanced_accuracy'])}</td>" in page
    for row in test["per_class"]:
        assert M.fmt(row["recall"]) in page and M.fmt(row["auc"]) in page
    assert "tau=1.0 (chosen on validation" in page
    assert "sampler class_balanced, backbone frozen" in page
    md = (run / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) == 5 and all((run / link).is_file() for link in links)
    assert "| mel<a> |" in md
    assert f"Shot thresholds: {test['shot_rule']}." in md and test["shot_rule"].startswith("fixed: many > 100")


def test_report_shows_weighted_rows_micro_auc_early_stop_and_class_map(tmp_path) -> None:
    run = make_run(tmp_path / "run")
    results = json.loads((run / "results.json").read_text())
    results.update(best_epoch=2, epochs=5, stopped_epoch=5, class_map={"malignant": ["mel", "bcc"], "benign": ["nv"]})
    (run / "results.json").write_text(json.dumps(results))
    md = R.write_report(run).with_suffix(".md").read_text()
    test = results["test"]
    for label, key in (("weighted precision", "weighted_precision"), ("weighted recall", "weighted_recall"), ("micro AUC", "micro_auc")):
        assert re.search(rf"\| {label}[^|]* \| {re.escape(M.fmt(test[key]))} \|", md), label
    assert "| early stopping | stopped after epoch 5 |" in md
    assert "| classes (data.classes) | malignant = mel + bcc; benign = nv |" in md


def test_report_without_test_split_uses_validation(tmp_path) -> None:
    run = make_run(tmp_path / "no_test", test=False)
    page = R.write_report(run).read_text()
    assert "No test split" in page
    assert "<h2>Per-class metrics (validation)</h2>" in page and "(test)" not in page
    assert len(embedded_images(page)) == 5  # the ROC/PR curves are the validation split's
    assert "<h2>ROC and precision-recall curves (validation)</h2>" in page
    val = json.loads((run / "results.json").read_text())["val"]
    assert f"<td>macro F1</td><td>{M.fmt(val['macro_f1'])}</td>" in page


def test_report_recomputes_metrics_from_predictions_without_results(tmp_path) -> None:
    run = make_run(tmp_path / "unevaluated", results=False)
    with np.load(run / "predictions" / "test.npz") as data:
        expected = M.compute(data["logits"], data["targets"])
    page = R.write_report(run).read_text()
    assert "No results.json" in page
    assert f"<td>balanced accuracy</td><td>{M.fmt(expected['balanced_accuracy'])}</td>" in page
    assert "shot groups cannot be formed" in page  # no train counts without results.json


def test_report_of_an_empty_directory_names_what_is_missing(tmp_path) -> None:
    page = R.write_report(tmp_path).read_text()
    for note in ("No config.yaml", "No metrics.jsonl", "No results.json", "No evaluated split"):
        assert note in page
    assert "<img" not in page
    with pytest.raises(LongtailError, match="not found"):
        R.write_report(tmp_path / "nope")


def test_truncated_log_line_is_skipped_and_corrupt_results_rejected(tmp_path) -> None:
    run = make_run(tmp_path / "killed")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 5, "train_lo')
    loaded = R.load_run(run)
    assert len(loaded.history) == 5 and any("skipped 1 unreadable" in n for n in loaded.notes)
    (run / "results.json").write_text("{")
    with pytest.raises(LongtailError, match="results.json: not valid JSON"):
        R.write_report(run)


def test_many_classes_render(tmp_path) -> None:
    run = make_run(tmp_path / "wide", num_classes=60)
    page = R.write_report(run).read_text()
    assert len(embedded_images(page)) == 5
    assert page.count("<tr>") > 60


def test_compare_writes_markdown_and_csv(tmp_path) -> None:
    a = make_run(tmp_path / "ce_run", loss="ce", seed=1)
    b = make_run(tmp_path / "focal_run", loss="focal", seed=2, test=False)
    table = R.compare([a, b], out=tmp_path / "out" / "cmp.md")
    assert table == (tmp_path / "out" / "cmp.md").read_text()
    with open(tmp_path / "out" / "cmp.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == ["ce_run", "focal_run"]
    assert [r["loss"] for r in rows] == ["ce", "focal"]
    assert rows[0]["sampler"] == "instance -> class_balanced"
    assert [r["split"] for r in rows] == ["test", "val"]
    res_a = json.loads((a / "results.json").read_text())["test"]
    res_b = json.loads((b / "results.json").read_text())["val"]
    assert rows[0]["balanced_accuracy"] == M.fmt(res_a["balanced_accuracy"])
    assert rows[1]["mauc"] == M.fmt(res_b["mauc"])
    assert rows[0]["few"] == M.fmt(res_a["shots"]["few"]["accuracy"])
    runs_table, note = table.split("\n\n")
    assert runs_table.count("\n") == 3  # header, rule, two runs
    assert note.startswith("No paired comparison: no saved test predictions in ")  # focal_run has no test split


def test_cli_commands(tmp_path, capsys) -> None:
    run = make_run(tmp_path / "cli_run")
    parser = argparse.ArgumentParser(prog="longtail")
    R.add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", str(run)])
    assert args.func(args) == 0
    assert (run / "report.html").is_file() and "report.html" in capsys.readouterr().out
    args = parser.parse_args(["compare", str(run), str(run), "--out", str(tmp_path / "cmp")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    runs_table, paired = out.split("\nPaired against ")
    assert runs_table.count(f"| {run} |") == 2 and (tmp_path / "cmp.csv").is_file()  # same name twice -> folders shown
    assert "| 0.0000 | [0.0000, 0.0000] | 1.0000 |" in paired  # a run against itself: no difference


def test_report_decision_sections(tmp_path) -> None:
    """ROC/PR with AUC and AP per class, the operating-point table, the deployment-prior table and the error gallery."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    run = make_run(tmp_path / "clinic", posthoc=True, decision=True)
    page = R.write_report(run).read_text()
    for title in ("ROC and precision-recall curves (test)", "Operating points (positive: mel&lt;a&gt; + nv)",
                  "Metrics under the deployment prior", "Most confident errors (test)"):
        assert f"<h2>{title}</h2>" in page
    images = embedded_images(page)
    assert len(images) == 6  # counts+recall, confusion, reliability, ROC/PR, gallery, curves
    with np.load(run / "predictions" / "test.npz") as z:
        logits, y = z["logits"], z["targets"]
    p = M.softmax(logits)
    for c, name in enumerate(["mel&lt;a&gt;", "nv", "bcc", "akiec", "df"]):
        auc, ap = roc_auc_score(y == c, p[:, c]), average_precision_score(y == c, p[:, c])
        assert f"<td>{name}</td><td>{int((y == c).sum())}</td><td>{M.fmt(auc)}</td><td>{M.fmt(ap)}</td>" in page
    decision = json.loads((run / "results.json").read_text())["decision"]
    op = decision["operating_points"]
    assert [r["target_specificity"] for r in op] == [0.8, 0.9, 0.95]
    assert f"<td>0.90</td><td>{op[1]['threshold']:.4f}</td><td>{M.fmt(op[1]['val_sensitivity'])}</td>" in page
    columns = decision["target_prior"]["columns"]
    assert list(columns) == ["test split's prior", "target prior", "target prior, after the post-hoc correction"]
    assert columns["test split's prior"]["accuracy"] == pytest.approx(float((logits.argmax(1) == y).mean()))
    assert "<th>test split&#x27;s prior</th><th>target prior</th>" in page
    assert "<td>PPV (precision), mel&lt;a&gt; + nv</td>" in page
    with np.load(run / "predictions" / "errors.npz") as e:
        wrong = np.flatnonzero(p.argmax(1) != y)
        assert len(e["targets"]) == min(16, len(wrong))
        assert e["confidence"].tolist() == sorted(e["confidence"].tolist(), reverse=True)
        assert e["confidence"][0] == pytest.approx(p[wrong].max()) and (e["predictions"] != e["targets"]).all()
        assert e["images"].shape[1:] == (45, 60, 3)  # smaller than the thumbnail size: kept, never enlarged


def test_validation_loss_is_drawn_beside_the_training_loss(tmp_path) -> None:
    run = make_run(tmp_path / "curves")
    page = R.write_report(run).read_text()
    assert "the validation loss is the plain cross-entropy of the validation logits" in page
    assert R.LOSS_LABELS == {"train_loss": "training (the method's loss)", "val_loss": "validation (cross-entropy)"}
