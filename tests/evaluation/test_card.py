"""The model card (``longtail card``, and ``longtail export`` beside the model): every number read from the run's files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

import longtail
from longtail import metrics as M
from longtail import rundir
from longtail.cli import main
from longtail.core.errors import LongtailError
from longtail.evaluation.card import card_markdown, licence_fields, write_card

from ..helpers import tiny_config


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A 1-epoch digits run with a temperature and prediction sets, and a data licence."""
    tmp = tmp_path_factory.mktemp("card")
    cfg = tiny_config(tmp, name="carded", train={"epochs": 1, "threads": 1}, posthoc={"temperature": "scalar"},
                      eval={"conformal": {"alpha": 0.2, "mode": "marginal"}})
    cfg["data"] = {**cfg["data"], "long_tail": None, "max_per_class": 30, "license": "CC BY 4.0 (UCI digits)"}
    return longtail.train(cfg).run_dir


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def test_header_has_the_hugging_face_fields_and_test_results(run) -> None:
    head = front_matter(card_markdown(run))
    results = rundir.read_json(run / rundir.RESULTS)
    assert head["library_name"] == "longtail" and head["pipeline_tag"] == "image-classification"
    assert head["license"] == "cc-by-4.0"
    metrics = {m["type"]: m["value"] for m in head["model-index"][0]["results"][0]["metrics"]}
    assert metrics["balanced_accuracy"] == pytest.approx(results["test"]["balanced_accuracy"])
    assert head["model-index"][0]["results"][0]["dataset"]["split"] == "test"


def test_body_numbers_come_from_the_run_files(run) -> None:
    text = card_markdown(run)
    results = rundir.read_json(run / rundir.RESULTS)
    meta = rundir.read_json(run / rundir.DATA_META)
    lines = text.splitlines()
    for c in results["test"]["per_class"]:  # the per-class recall table: class, train images, test images, recall
        assert f"| {c['name']} | {c['train_count']} | {c['support']} | {c['recall']:.4f} |" in "\n".join(lines), c["name"]
    for name, count in zip(meta["class_names"], meta["train_counts"]):
        assert any(line.startswith(f"| {name} | {count} |") for line in lines), name
    weights = hashlib.sha256((run / rundir.BEST).read_bytes()).hexdigest()
    assert weights in text
    assert hashlib.sha256((run / rundir.CONFIG).read_bytes()).hexdigest()[:16] in text
    for key, label in (("balanced_accuracy", "balanced accuracy"), ("accuracy", "accuracy")):  # the summary rows: value, then its interval
        ci = results["intervals"]["test"][key]
        assert f"| {label} | {M.fmt(results['test'][key])} | {M.interval_text(ci)} |" in text, key
    t = rundir.read_json(run / rundir.TRUST)["temperature"]["value"]
    assert f"T = {float(t):.3f}" in text
    assert "## Licence of the data" in text and "CC BY 4.0 (UCI digits)" in text


def test_licence_words_map_to_header_ids() -> None:
    assert licence_fields("CC BY-NC-SA 4.0 (non-commercial)")["license"] == "cc-by-nc-sa-4.0"
    assert licence_fields(None)["license"] == "other"


def test_cli_writes_the_card_and_refuses_a_run_owned_file(run, tmp_path, capsys) -> None:
    out = tmp_path / "card.md"
    assert main(["card", str(run), "--out", str(out)]) == 0
    assert out.read_text().startswith("---\n") and str(out) in capsys.readouterr().out
    before = (run / rundir.RESULTS).read_bytes()
    assert main(["card", str(run), "--out", str(run / rundir.RESULTS)]) == 2
    assert "results" in capsys.readouterr().err
    assert (run / rundir.RESULTS).read_bytes() == before
    other = tmp_path / "other"  # another run directory: its card is not this run's to replace
    other.mkdir()
    (other / rundir.MARKER).write_text("")
    assert main(["card", str(run), "--out", str(other / rundir.CARD)]) == 2
    assert "card of another run" in capsys.readouterr().err and not (other / rundir.CARD).exists()


def test_a_run_without_a_licence_says_how_to_set_it(tmp_path) -> None:
    cfg = tiny_config(tmp_path, name="nolicence", train={"epochs": 1, "threads": 1})
    cfg["data"] = {**cfg["data"], "long_tail": None, "max_per_class": 10}
    run = longtail.train(cfg).run_dir
    text = write_card(run).read_text()
    assert "set data.license in the recipe" in text and (run / rundir.CARD).is_file()
    given = write_card(run, tmp_path / "given.md", license="CC BY-NC 4.0").read_text()
    assert front_matter(given)["license"] == "cc-by-nc-4.0" and "non-commercial" in given.lower()


def test_export_writes_the_card_beside_the_model(run, tmp_path) -> None:
    (tmp_path / "out").mkdir()
    model = longtail.export(run, "torchscript", tmp_path / "out" / "model.pt")
    card = tmp_path / "out" / "model_card.md"
    assert card.is_file()
    text = card.read_text()
    assert "model.pt" in text and hashlib.sha256(Path(model).read_bytes()).hexdigest() in text
    assert front_matter(text)["license"] == "cc-by-4.0"


def test_export_refuses_another_runs_folder_before_any_work(run, tmp_path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / rundir.MARKER).write_text("")
    with pytest.raises(LongtailError, match="card of another run"):
        longtail.export(run, "torchscript", other / "model.pt")
    assert sorted(p.name for p in other.iterdir()) == [rundir.MARKER]  # nothing written: checked before the export


@pytest.mark.parametrize("missing", [rundir.RESULTS, rundir.BEST])
def test_card_of_an_unfinished_run_is_a_one_line_error(run, tmp_path, capsys, missing) -> None:
    import shutil

    copy = Path(shutil.copytree(run, tmp_path / "unfinished"))
    (copy / missing).unlink()
    (copy / rundir.CARD).unlink(missing_ok=True)
    assert main(["card", str(copy)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"has no {missing}" in err and f"longtail train --resume {copy}" in err
    assert not (copy / rundir.CARD).exists()


def test_export_keeps_the_model_when_its_card_cannot_be_written(run, tmp_path, monkeypatch, caplog) -> None:
    import longtail.evaluation.card as card_module

    def failing(*args, **kwargs):
        raise LongtailError("cannot write 'model_card.md' (No space left on device); free disk space and run again")

    monkeypatch.setattr(card_module, "write_card", failing)
    (tmp_path / "out").mkdir()
    with caplog.at_level("WARNING"):
        model = Path(longtail.export(run, "torchscript", tmp_path / "out" / "model.pt"))
    assert model.is_file() and not (tmp_path / "out" / rundir.CARD).exists()
    assert "exported but its card was not written" in caplog.text and "No space left" in caplog.text
