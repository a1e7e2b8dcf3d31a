"""The trust layer wired into a run (issue #26): fitted on validation, stored in trust.json, read on test,
applied by predict and export, laid out in the report."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

import longtail
from longtail import rundir
from longtail.catalog.check import load_config
from longtail.core.errors import ConfigError
from longtail.evaluation import trust
from longtail.evaluation.calibration_fit import fit_temperature
from longtail.evaluation.conformal import fit_conformal
from longtail.evaluation.selective import choose_threshold
from longtail.metrics.calibration_scores import calibration_scores

from ..helpers import tiny_config

TRUST_SECTIONS = {"posthoc": {"temperature": "scalar"}, "eval": {"conformal": {"alpha": 0.2, "mode": "marginal"}, "selective": {"target_coverage": 0.7}}}


def _synthetic(n: int = 600, c: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    z = rng.normal(size=(n, c)) + 2.0 * np.eye(c)[y]
    return 3.0 * z, y  # over-confident: the fitted temperature is near 3


def test_fit_stores_exactly_what_the_core_functions_compute():
    z, y = _synthetic()
    names = [f"c{i}" for i in range(4)]
    eval_cfg = load_config("configs/quickstart.yaml", ["eval.conformal.alpha=0.1", "eval.selective.score=margin"]).eval
    fitted = trust.fit(z, y, names, "scalar", eval_cfg)
    t = fit_temperature(z, y, "scalar")
    assert fitted["temperature"] == {"mode": "scalar", "value": float(t)} and float(t) > 1.2  # the logits were made over-confident
    probs = trust.calibrated_probs(z, fitted)
    np.testing.assert_allclose(probs, torch.softmax(torch.as_tensor(z / float(t)), 1).numpy(), atol=1e-12)
    assert fitted["conformal"] == fit_conformal(probs, y, 0.1, "class_conditional", names).to_dict()
    assert fitted["selective"]["threshold"] == choose_threshold(probs, y, "margin", target_coverage=0.8)
    assert fitted["selective"]["target_coverage"] == 0.8  # the default target when none is set


def test_summary_reads_the_fit_on_another_split():
    z, y = _synthetic(seed=1)
    zt, yt = _synthetic(seed=2)
    names = [f"c{i}" for i in range(4)]
    cfg = load_config("configs/quickstart.yaml", ["eval.conformal.mode=marginal", "eval.selective.target_coverage=0.5"])
    fitted = trust.fit(z, y, names, "vector", cfg.eval)
    out = trust.summarise(zt, yt, fitted, names)
    before, after = out["calibration"]["before"], out["calibration"]["after"]
    reference = calibration_scores(torch.softmax(torch.as_tensor(zt), 1).numpy(), yt)
    assert before == pytest.approx(reference, rel=1e-9)
    assert after["nll"] < before["nll"] and after["ece"] < before["ece"]
    sets = trust.image_sets(trust.calibrated_probs(zt, fitted), fitted)
    assert out["conformal"]["coverage"] == pytest.approx(np.mean(sets[np.arange(len(yt)), yt]))
    assert out["conformal"]["coverage"] >= 0.85  # alpha 0.1 on exchangeable data (a seed-fixed draw)
    chosen = out["selective"]["chosen"]
    abstain = trust.abstains(trust.calibrated_probs(zt, fitted), fitted)
    assert chosen["abstained"] == int(abstain.sum()) and 0.4 < chosen["coverage"] < 0.6
    assert out["selective"]["max_prob"]["aurc"] <= np.mean(trust.calibrated_probs(zt, fitted).argmax(1) != yt)


@pytest.mark.parametrize("override, message", [
    ("eval.conformal.alpha=1.5", "eval.conformal.alpha' (1.5): Input should be less than 1"),
    ("eval.conformal.alpha=0", "eval.conformal.alpha' (0): Input should be greater than 0"),
    ("eval.selective={target_coverage: 0.8, target_risk: 0.1}", "set one of eval.selective.target_coverage or eval.selective.target_risk"),
    ("posthoc.temperature=matrix", "posthoc.temperature"),
])
def test_bad_trust_settings_are_one_line_config_errors(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", "[.]")):
        load_config("configs/quickstart.yaml", [override])


@pytest.fixture(scope="module")
def trusted_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trust")
    return longtail.train(tiny_config(tmp, name="trusted", **TRUST_SECTIONS)).run_dir


def test_a_run_stores_the_fit_and_reports_it_on_test(trusted_run):
    fitted = json.loads((trusted_run / rundir.TRUST).read_text())
    assert set(fitted) == {"temperature", "conformal", "selective"}
    res = json.loads((trusted_run / rundir.RESULTS).read_text())
    saved = rundir.load_predictions(trusted_run, "test")
    names = res["class_names"]
    assert res["trust"]["test"] == json.loads(json.dumps(trust.summarise(saved["logits"], saved["targets"], fitted, names)))
    report = (trusted_run / "report.md").read_text()
    for title in ("Calibration (test)", "Prediction sets (alpha 0.2)", "Selective prediction (test)"):
        assert f"## {title}" in report
    assert (trusted_run / "report_files" / "risk_coverage.png").is_file()


def test_predict_writes_the_set_and_the_abstention_of_each_image(trusted_run, tmp_path):
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i in range(6):
        Image.fromarray((digits.images[i] * 16).astype(np.uint8)).save(tmp_path / f"d{i}.png")
    out = tmp_path / "p.csv"
    rows = longtail.predict(trusted_run, sorted(tmp_path.glob("*.png")), out=out)
    with out.open() as f:
        written = list(csv.DictReader(f))
    fitted = json.loads((trusted_run / rundir.TRUST).read_text())
    names = json.loads((trusted_run / rundir.RESULTS).read_text())["class_names"]
    probs = np.asarray([[float(r[n]) for n in names] for r in written])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    sets = trust.image_sets(probs, fitted)
    abstain = trust.abstains(probs, fitted)
    for r, s, a in zip(written, sets, abstain):
        assert r["prediction_set"] == ";".join(n for n, keep in zip(names, s) if keep)
        assert r["abstain"] == ("yes" if a else "no")
    assert len(rows) == 6


def test_export_folds_the_temperature_in(trusted_run, tmp_path):
    from longtail.inference.export import build_deployed

    deployed, side = build_deployed(trusted_run)
    fitted = json.loads((trusted_run / rundir.TRUST).read_text())
    assert side["inside_model"]["temperature"] == fitted["temperature"]["value"]
    x = torch.rand(3, 1, 8, 8)
    model = deployed.model
    with torch.no_grad():
        x_norm = (x - deployed.mean) / deployed.std
        expected = torch.softmax(model(x_norm) / fitted["temperature"]["value"], 1)
        assert torch.allclose(deployed(x), expected, atol=1e-6)
