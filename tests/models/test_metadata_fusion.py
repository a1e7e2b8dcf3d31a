"""model.metadata (issue #28): the metadata MLP joined to the image features before the head, a tiny run
that trains with it end to end, predicts and exports with a CSV beside the images, the one-line errors,
and an image-only run that is exactly what it was."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import longtail
from longtail import rundir
from longtail.core.errors import ConfigError, LongtailError
from longtail.core.schema import ModelConfig
from longtail.models import build_model
from longtail.models.classifier import Classifier
from longtail.models.small_cnn import SmallCNN
from longtail.rundir.checkpoint import config_hash, load_checkpoint

from ..robustness.common import cli, one_error, small


# ------------------------------------------------------------------------------ the model
def _classifier(metadata_dim: int = 0) -> Classifier:
    torch.manual_seed(0)
    return Classifier(SmallCNN(in_channels=3), 3, metadata_dim=metadata_dim, metadata_hidden=4)


def test_the_embedding_is_joined_to_the_image_features_before_the_head():
    model = _classifier(metadata_dim=5).eval()
    width = model.backbone.feature_dim
    assert model.feature_dim == width + 4 and model.head.weight.shape == (3, width + 4)
    x, meta = torch.rand(2, 3, 8, 8), torch.rand(2, 5)
    logits, feats = model(x, return_features=True, meta=meta)
    assert torch.allclose(feats[:, :width], model.backbone(x)) and torch.allclose(feats[:, width:], model.metadata_mlp(meta))
    assert torch.allclose(logits, model.head(feats))
    other = model(x, meta=torch.rand(2, 5))
    assert not torch.allclose(other, logits)  # the metadata changes the prediction
    with pytest.raises(LongtailError, match="also takes 5 encoded metadata inputs"):
        model(x)


def test_freeze_backbone_freezes_the_metadata_mlp_and_freeze_fraction_counts_it_after_the_backbone():
    model = _classifier(metadata_dim=5)
    model.freeze_backbone(True)
    assert not any(p.requires_grad for p in model.metadata_mlp.parameters()) and all(p.requires_grad for p in model.head.parameters())
    model.freeze_backbone(False)
    assert all(p.requires_grad for p in model.parameters())
    names = [n for n, _ in model.named_parameters()]
    first_mlp, first_head = names.index("metadata_mlp.layers.0.weight"), names.index("head.weight")
    assert all(n.startswith("backbone.") for n in names[:first_mlp]) and first_mlp < first_head
    model.freeze_fraction(0.5)
    assert all(p.requires_grad for p in model.head.parameters())


def test_an_image_only_model_and_its_hash_are_as_before():
    plain = _classifier()
    assert plain.metadata_mlp is None and not any("metadata" in k for k in plain.state_dict())
    with pytest.raises(LongtailError, match="takes images only"):
        plain(torch.rand(1, 3, 8, 8), meta=torch.rand(1, 2))
    dump = ModelConfig(name="small_cnn").model_dump(mode="json")
    before = {k: v for k, v in dump.items() if not k.startswith("metadata")}  # the model section before the option existed
    assert config_hash(dump) == config_hash(before)
    assert config_hash(ModelConfig(name="small_cnn", metadata=["age"]).model_dump(mode="json")) != config_hash(before)
    assert ModelConfig(metadata=[]).metadata is None  # [] is the same run as unset


def test_build_model_needs_the_width_and_refuses_bbn():
    with pytest.raises(ConfigError, match="model.metadata is set but no encoded metadata width"):
        build_model(ModelConfig(name="small_cnn", metadata=["age"]), 3, 3)
    with pytest.raises(ConfigError, match="does not work with the BBN model 'bbn_resnet32'"):
        build_model(ModelConfig(name="bbn_resnet32", metadata=["age"]), 3, 3, metadata_dim=4)
    assert build_model(ModelConfig(name="small_cnn", metadata=["age"], metadata_hidden=8), 3, 3, metadata_dim=4).feature_dim \
        == build_model(ModelConfig(name="small_cnn"), 3, 3).feature_dim + 8


# ------------------------------------------------------------------------------ a tiny run
AGES = {i: ("" if i % 11 == 0 else str(30 + (i * 7) % 50 + (20 if i % 3 == 0 else 0))) for i in range(48)}


def _data(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    root.mkdir()
    lines = ["image,label,age,sex,site"]
    for i in range(48):
        label = "b" if i % 3 == 0 else "a"
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / f"{i}.png")
        lines.append(f"{i}.png,{label},{AGES[i]},{'male' if i % 2 else 'female'},{'face' if label == 'b' else 'back'}")
    (tmp_path / "meta.csv").write_text("\n".join(lines) + "\n")
    return root, tmp_path / "meta.csv"


def _config(tmp_path, root, csv, name, **model):
    return small(tmp_path, name, data={"source": {"name": "csv", "file": str(csv), "root": str(root)},
                                       "split": {"val": 0.25, "test": 0.25}, "train_transforms": [], "batch_size": 8,
                                       "image_size": 8, "max_per_class": None}, model={"name": "small_cnn", **model})


@pytest.fixture(scope="module")
def metadata_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metadata")
    root, csv = _data(tmp)
    result = longtail.train(_config(tmp, root, csv, "fused", metadata=["age", "sex", "site"]))
    return result, root, csv


def test_the_run_saves_the_encoding_fitted_on_its_train_split(metadata_run):
    result, _, _ = metadata_run
    run = result.run_dir
    saved = json.loads((run / rundir.METADATA_ENCODING).read_text())
    train = json.loads((run / rundir.SPLITS).read_text())["train"]["indices"]  # rows of the CSV (ids i.png)
    ages = np.asarray([float(AGES[i]) for i in train if AGES[i]])
    age, sex, site = saved["columns"]
    assert age == {"name": "age", "kind": "numeric", "mean": pytest.approx(ages.mean()), "std": pytest.approx(ages.std())}
    assert sex["vocabulary"] == ["female", "male"] and site["vocabulary"] == ["back", "face"]
    assert saved["slots"] == ["age", "age:missing", "sex=female", "sex=male", "sex:unknown", "site=back", "site=face", "site:unknown"]
    state = load_checkpoint(run / rundir.BEST)["model"]
    assert state["metadata_mlp.layers.0.weight"].shape[1] == saved["width"] == 8
    assert longtail.evaluate(run)["accuracy"] == pytest.approx(result.results["test"]["accuracy"])  # eval rebuilds the same inputs


def test_predict_with_the_csv_scores_as_the_final_evaluation_did(metadata_run, tmp_path):
    result, root, csv = metadata_run
    run = result.run_dir
    test = rundir.load_predictions(run, "test")
    files = [root / str(i) for i in test["ids"]]
    rows = longtail.predict(run, files, metadata=csv, out=tmp_path / "p.csv")
    probs = np.asarray([[r[c] for c in result.results["class_names"]] for r in rows])
    z = test["logits"] - test["logits"].max(1, keepdims=True)
    expected = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    if (run / rundir.TRUST).is_file() and json.loads((run / rundir.TRUST).read_text()).get("temperature"):
        np.testing.assert_array_equal(probs.argmax(1), expected.argmax(1))  # calibrated probabilities keep the ranking
    else:
        np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert (tmp_path / "p.csv").is_file()


def test_predict_errors_name_the_problem_and_the_fix(metadata_run, tmp_path, capsys):
    result, root, csv = metadata_run
    run, image = result.run_dir, str(root / "1.png")
    (tmp_path / "nosite.csv").write_text("image,age,sex\n1.png,40,male\n")
    code, err = cli(capsys, "predict", run, image, "--metadata", tmp_path / "nosite.csv", "--out", tmp_path / "o.csv")
    assert code == 2
    one_error(err, "has no column 'site', which this run's model takes (model.metadata: [age, sex, site])", "add the column")
    (tmp_path / "other.csv").write_text("image,age,sex,site\n2.png,40,male,back\n")
    code, err = cli(capsys, "predict", run, image, "--metadata", tmp_path / "other.csv", "--out", tmp_path / "o.csv")
    one_error(err, "image '", "1.png' has no row in metadata CSV", "add a row for it")
    code, err = cli(capsys, "predict", run, image, "--out", tmp_path / "o.csv")
    one_error(err, "also takes metadata (age, sex, site)", "--metadata FILE.csv")
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_takes_the_metadata_as_a_second_input(metadata_run, tmp_path, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    from longtail.data.metadata import MetadataTable
    from longtail.inference.export import run_exported, sidecar_path
    from longtail.inference.predictor import Predictor

    result, root, csv = metadata_run
    path = longtail.export(result.run_dir, fmt, out=tmp_path / f"m.{fmt}")
    info = json.loads(sidecar_path(path).read_text())
    assert info["metadata"]["input_name"] == "metadata" and info["metadata"]["input_shape"] == ["batch", 8]
    assert info["metadata"]["encoding"] == json.loads((result.run_dir / rundir.METADATA_ENCODING).read_text())
    predictor = Predictor(result.run_dir)
    files = [root / f"{i}.png" for i in (0, 5, 7)]
    raw = torch.stack([predictor.image_decoder()(str(f)) for f in files])
    meta = predictor.encode_metadata([MetadataTable(csv, ["age", "sex", "site"]).row(f) for f in files], [str(f) for f in files], "csv")
    scored = predictor.score(raw, meta)
    exported = run_exported(path, raw.float().numpy() / 255.0, meta.numpy())
    np.testing.assert_allclose(exported, scored.shown, atol=1e-4)


def test_serve_and_explain_refuse_a_metadata_model(metadata_run):
    from longtail.evaluation.explain import refuse_metadata
    from longtail.inference.predictor import Predictor

    with pytest.raises(ConfigError, match="Grad-CAM explains image-only models"):
        refuse_metadata(Predictor(metadata_run[0].run_dir).model)


# ------------------------------------------------------------------------------ unchanged without it
@pytest.mark.slow
def test_an_image_only_run_is_unchanged_and_refuses_a_metadata_csv(tmp_path, capsys):
    """Two trainings: no key and ``model.metadata: []`` give the same weights, no encoding file, and predict refuses a CSV."""
    root, csv = _data(tmp_path)
    a = longtail.train(_config(tmp_path, root, csv, "plain"))
    b = longtail.train(_config(tmp_path, root, csv, "empty", metadata=[]))
    sa, sb = (load_checkpoint(r.run_dir / rundir.BEST)["model"] for r in (a, b))
    assert sa.keys() == sb.keys() and not any("metadata" in k for k in sa)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not (a.run_dir / rundir.METADATA_ENCODING).exists()
    code, err = cli(capsys, "predict", a.run_dir, root / "1.png", "--metadata", csv, "--out", tmp_path / "o.csv")
    assert code == 2
    one_error(err, "takes images only", "drop --metadata")


def test_an_unknown_column_is_refused_before_training(tmp_path, capsys):
    from ..robustness.common import write_yaml

    root, csv = _data(tmp_path)
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", _config(tmp_path, root, csv, "bad", metadata=["sitee"])))
    assert code == 2
    one_error(err, "model.metadata: column 'sitee' is not in the data's metadata (did you mean 'site'?)")


def test_a_resumed_run_keeps_the_encoding_it_fitted(tmp_path):
    """The encoding is fitted once: a resume reads metadata_encoding.json, even after the CSV has changed."""
    root, csv = _data(tmp_path)
    cfg = _config(tmp_path, root, csv, "resumed", metadata=["age", "site"])
    cfg["train"]["epochs"] = 2
    run = longtail.train(cfg, stop_after=1).run_dir
    saved = (run / rundir.METADATA_ENCODING).read_text()
    csv.write_text(csv.read_text().replace(",back", ",hand"))  # other categories: a fresh fit would differ
    assert longtail.train(resume=run).finished
    assert (run / rundir.METADATA_ENCODING).read_text() == saved


def test_metadata_missing_error_names_the_image_and_the_column_before_training(tmp_path, capsys):
    from ..robustness.common import write_yaml

    root, csv = _data(tmp_path)
    cfg = _config(tmp_path, root, csv, "strict", metadata=["age"], metadata_missing="error")
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", cfg))
    assert code == 2
    one_error(err, "has no value in metadata column 'age' (the training split)", "model.metadata_missing: indicator")
    assert not (tmp_path / "runs" / "strict").exists()


def test_the_export_graph_folds_a_tau_norm_head_onto_the_fused_features():
    from longtail.inference.export import Deployed

    model = _classifier(metadata_dim=5).eval()
    head = torch.nn.Linear(model.feature_dim, 3)
    head.load_state_dict({"weight": model.head.weight.detach(), "bias": model.head.bias.detach()})
    plain = Deployed(model, [], [0.5] * 3, [0.25] * 3, None, None, clips=False).eval()
    folded = Deployed(model, [], [0.5] * 3, [0.25] * 3, head, None, clips=False).eval()
    x, meta = torch.rand(2, 3, 8, 8), torch.rand(2, 5)
    with torch.no_grad():
        assert plain.takes_metadata and torch.allclose(plain(x, meta), folded(x, meta), atol=1e-6)
