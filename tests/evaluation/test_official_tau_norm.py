"""tau-normalisation against classifier-balancing's own code (issue 25), with both bias options.

The official form is facebookresearch/classifier-balancing, commit
f162adef63fdf592d0b8a0f6e52bc481fc08785f, ``tau_norm.py``: it loads ``module.fc.weight`` and
``module.fc.bias`` of the trained ``DotProduct_Classifier`` (``models/DotProductClassifier.py``:
``nn.Linear(feat_dim, num_classes)``, so the head has a bias), rescales the rows with
``pnorm(weights, p)`` (``ws[i] = weights[i] / ||weights[i]||_2 ** p``) for ``p`` in
``np.linspace(0, 2, 21)`` and scores ``forward(ws)`` = ``dotproduct_similarity(feat, ws)`` =
``feat @ ws.T``: the bias is never added (its ``linear_classifier`` with the bias is unused).
``posthoc.tau_norm_bias: drop`` computes that; ``keep`` (longtail's default) adds the bias unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import longtail
from longtail import api, rundir
from longtail.catalog.check import load_config
from longtail.core.errors import ConfigError, LongtailError
from longtail.core.schema import PosthocConfig
from longtail.evaluation import posthoc as P
from longtail.inference.export import build_deployed
from longtail.metrics import softmax
from longtail.training import loading

from ..helpers import tiny_config
from ..test_protocols import header, header_chain

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
#: tau_norm.py's sweep: np.linspace(0, 2, 21)
OFFICIAL_TAUS = [float(p) for p in np.linspace(0, 2, 21)]
#: the recipes that name classifier-balancing and tau-normalise
CLASSIFIER_BALANCING_TAU_NORM = ["cifar10_lt/crt_tau_norm.yaml", "imagenet_lt/tau_norm_resnet10.yaml", "imagenet_lt/tau_norm_resnext50.yaml"]


# ------------------------------------------------------------ the official formula, written out
def official_pnorm(weights: torch.Tensor, p: float) -> torch.Tensor:
    """tau_norm.py's ``pnorm``: every row divided by its L2 norm to the power p, row by row."""
    norm = torch.norm(weights, 2, 1)
    ws = weights.clone()
    for i in range(weights.size(0)):
        ws[i] = ws[i] / torch.pow(norm[i], p)
    return ws


def official_logits(feats: np.ndarray, weights: np.ndarray, p: float) -> np.ndarray:
    """tau_norm.py's ``forward(pnorm(weights, p))``: ``torch.mm(feat, ws.t())``, no bias."""
    w = torch.as_tensor(weights, dtype=torch.float64)
    return torch.mm(torch.as_tensor(feats, dtype=torch.float64), official_pnorm(w, p).t()).numpy()


# fixed inputs: 5 features of 3 dimensions, a 4-class head whose rows have norms 5, 1, 13 and 2
FEATS = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0], [2.5, 0.5, -0.5], [-1.0, 1.0, 1.0], [0.3, 0.0, 0.0]])
WEIGHT = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 1.0], [5.0, 0.0, 12.0], [0.0, -2.0, 0.0]])
BIAS = np.array([0.5, -1.0, 2.0, 0.25])


def test_fixed_values_match_the_official_formula_for_both_options():
    # by hand at tau 1: unit rows (3/5, 4/5, 0), (0, 0, 1), (5/13, 0, 12/13), (0, -1, 0)
    unit = np.array([[0.6, 0.8, 0.0], [0.0, 0.0, 1.0], [5 / 13, 0.0, 12 / 13], [0.0, -1.0, 0.0]])
    np.testing.assert_allclose(official_logits(FEATS, WEIGHT, 1.0), FEATS @ unit.T, rtol=1e-12)
    np.testing.assert_allclose(P.tau_norm_logits(FEATS, WEIGHT, BIAS, 1.0, "drop")[0], [2.2, 0.5, 5 / 13 + 6 / 13, -2.0], rtol=1e-12)
    for tau in OFFICIAL_TAUS:
        official = official_logits(FEATS, WEIGHT, tau)
        np.testing.assert_allclose(P.tau_norm_logits(FEATS, WEIGHT, BIAS, tau, "drop"), official, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(P.tau_norm_logits(FEATS, WEIGHT, BIAS, tau, "keep"), official + BIAS, rtol=1e-12, atol=1e-12)
        # the default is keep: the historical form, bit for bit
        assert np.array_equal(P.tau_norm_logits(FEATS, WEIGHT, BIAS, tau), P.tau_norm_logits(FEATS, WEIGHT, BIAS, tau, "keep"))
        # torch in, torch out, the same values
        t = P.tau_norm_logits(torch.tensor(FEATS), torch.tensor(WEIGHT), torch.tensor(BIAS), tau, "drop")
        assert isinstance(t, torch.Tensor)
        np.testing.assert_allclose(t.numpy(), official, rtol=1e-12, atol=1e-12)
    # the two options differ by the bias, so tau 0 is the plain head only with keep
    np.testing.assert_allclose(P.tau_norm_logits(FEATS, WEIGHT, BIAS, 0.0, "keep"), FEATS @ WEIGHT.T + BIAS)
    np.testing.assert_allclose(P.tau_norm_logits(FEATS, WEIGHT, BIAS, 0.0, "drop"), FEATS @ WEIGHT.T)
    with pytest.raises(ConfigError, match="drop, keep"):
        P.tau_norm_logits(FEATS, WEIGHT, BIAS, 1.0, "ignore")


def test_fit_stores_the_option_and_apply_uses_it():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(60, 3))
    y = (feats @ (WEIGHT / np.linalg.norm(WEIGHT, axis=1, keepdims=True)).T).argmax(1)
    logits = feats @ WEIGHT.T + BIAS
    for mode in ("drop", "keep"):
        chosen = P.fit_posthoc(logits, y, [10] * 4, tau_norm=True, grid=OFFICIAL_TAUS, val_features=feats,
                               head_weight=WEIGHT, head_bias=BIAS, tau_norm_bias=mode)
        assert chosen["tau_norm"]["bias"] == mode
        tau = chosen["tau_norm"]["tau"]
        expected = official_logits(feats, WEIGHT, tau) + (BIAS if mode == "keep" else 0.0)
        np.testing.assert_allclose(P.apply_posthoc(logits, feats, chosen, WEIGHT, BIAS), expected, rtol=1e-12, atol=1e-12)
        # every grid score is the official form's
        score = P.score(official_logits(feats, WEIGHT, tau) + (BIAS if mode == "keep" else 0.0), y, "balanced_accuracy")
        assert chosen["tau_norm"]["val_score"] == score
    # a posthoc.json written before the option has no "bias": applied as before (kept)
    old = {"tau_norm": {"tau": 1.0, "metric": "balanced_accuracy"}}
    np.testing.assert_allclose(P.apply_posthoc(logits, feats, old, WEIGHT, BIAS), official_logits(feats, WEIGHT, 1.0) + BIAS, rtol=1e-12)
    assert P.tau_norm_bias_mode(old["tau_norm"]) == "keep"
    with pytest.raises(LongtailError, match="tau_norm bias 'nobias' is not one of drop, keep"):
        P.apply_posthoc(logits, feats, {"tau_norm": {"tau": 1.0, "bias": "nobias"}}, WEIGHT, BIAS)


def test_schema_option_and_its_default():
    assert PosthocConfig().tau_norm_bias == "keep"
    assert PosthocConfig(tau_norm=True, tau_norm_bias="drop").tau_norm_bias == "drop"
    with pytest.raises(ValueError, match="tau_norm_bias"):
        PosthocConfig(tau_norm_bias="off")


def names_classifier_balancing(path: Path) -> bool:
    """The recipe's header, or that of a ``base:`` file it extends, names classifier-balancing."""
    return "classifier-balancing" in header_chain(path)


def test_recipes_naming_classifier_balancing_run_the_official_form():
    official = []
    for path in sorted(CONFIGS.rglob("*.yaml")):
        if "tau_norm" not in path.read_text() and not names_classifier_balancing(path):
            continue
        cfg = load_config(path)
        if cfg.posthoc.tau_norm and names_classifier_balancing(path):
            assert cfg.posthoc.tau_norm_bias == "drop", f"{path.relative_to(CONFIGS)} names classifier-balancing but keeps the bias"
            assert "tau_norm_bias" in header(path) or "tau_norm.py" in header(path)
            official.append(str(path.relative_to(CONFIGS)))
    assert official == sorted(CLASSIFIER_BALANCING_TAU_NORM)
    # tau_norm.py's sweep is the default validation grid
    assert load_config(CONFIGS / "imagenet_lt/tau_norm_resnet10.yaml").posthoc.grid == pytest.approx(OFFICIAL_TAUS)
    # a recipe adding tau-norm of its own (not classifier-balancing's) keeps the bias, as before
    assert load_config(CONFIGS / "cifar10_lt/logit_adjust.yaml").posthoc.tau_norm_bias == "keep"


# ------------------------------------------------------------------ a trained run, both options
def digit_images(folder: Path, n: int = 6) -> list[Path]:
    from sklearn.datasets import load_digits

    folder.mkdir()
    paths = []
    for i, image in enumerate(load_digits().images[:n]):
        paths.append(folder / f"d{i}.png")
        Image.fromarray((image * 255 / 16).astype(np.uint8)).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def dropped(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tau_norm_bias")
    cfg = tiny_config(tmp, name="drop", posthoc={"tau_norm": True, "tau_norm_bias": "drop", "grid": [0.0, 0.5, 1.0, 1.5]})
    return longtail.train(cfg).run_dir, digit_images(tmp / "imgs")


def test_a_run_chooses_and_reports_the_official_form(dropped):
    run_dir, _ = dropped
    posthoc = rundir.read_json(run_dir / rundir.POSTHOC)
    assert posthoc["tau_norm"]["bias"] == "drop"
    state = torch.load(run_dir / rundir.BEST, map_location="cpu", weights_only=True)["model"]
    w, b = state["head.weight"].double().numpy(), state["head.bias"].double().numpy()
    assert np.abs(b).max() > 1e-4  # a trained bias: the options differ on this run
    test = np.load(run_dir / rundir.PREDICTIONS / "test.npz")
    logits = official_logits(test["features"].astype(np.float64), w, posthoc["tau_norm"]["tau"])
    results = rundir.read_json(run_dir / rundir.RESULTS)
    assert results["test_posthoc"]["balanced_accuracy"] == pytest.approx(P.score(logits, test["targets"], "balanced_accuracy"), abs=1e-9)


@pytest.mark.parametrize("mode", ["drop", "keep"])
def test_export_equals_apply_posthoc(dropped, mode, tmp_path):
    run_dir, images = dropped
    posthoc = rundir.read_json(run_dir / rundir.POSTHOC)
    if mode == "keep":  # the same run, its posthoc.json switched to the bias kept
        posthoc["tau_norm"]["bias"] = "keep"
        rundir.write_json(run_dir / rundir.POSTHOC, posthoc)
    try:
        deployed, info = build_deployed(run_dir)
        assert (deployed.head.bias is not None) == (mode == "keep")
        assert info["inside_model"]["posthoc"]["tau_norm"] == {"tau": posthoc["tau_norm"]["tau"], **({"bias": "drop"} if mode == "drop" else {})}
        # the exported graph's probabilities = predict's, which applies posthoc.json through apply_posthoc
        rows = api.predict(run_dir, images)
        expected = np.array([[r[c] for c in info["class_names"]] for r in rows])
        h, w = info["image_size"]
        x = np.stack([np.asarray(Image.open(p).convert("L").resize((w, h), Image.BILINEAR), np.float32) / 255 for p in images])[:, None]
        with torch.no_grad():
            got = deployed(torch.from_numpy(x)).numpy()
        assert np.abs(got - expected).max() < 1e-5
        # and = apply_posthoc on the model's own features and head, directly
        from longtail.training.finalize import head_params

        model = deployed.model
        with torch.no_grad():
            z = torch.from_numpy(x)
            for op in deployed.ops:
                z = op(z)
            z = (z - deployed.mean) / deployed.std
            feats = model.backbone(z).double().numpy()
        hw, hb = head_params(model)
        direct = softmax(P.apply_posthoc(feats @ hw.T + hb, feats, posthoc, hw, hb))
        assert np.abs(got - direct).max() < 1e-5
        if mode == "drop":
            np.testing.assert_allclose(direct, softmax(official_logits(feats, hw, posthoc["tau_norm"]["tau"])), atol=1e-6)
    finally:
        posthoc["tau_norm"]["bias"] = "drop"
        rundir.write_json(run_dir / rundir.POSTHOC, posthoc)
    assert loading.read_posthoc(run_dir)["tau_norm"]["bias"] == "drop"
