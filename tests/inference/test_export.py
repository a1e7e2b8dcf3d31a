"""`longtail export`: the exported ONNX / TorchScript model gives `longtail predict`'s probabilities."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import longtail
from longtail import api, rundir
from longtail.catalog.check import load_config
from longtail.core.config import dump
from longtail.core.errors import LongtailError
from longtail.inference.export import export, run_exported, sidecar_path
from longtail.training import loading

from ..helpers import tiny_config


def digit_images(folder: Path, n: int = 5) -> list[Path]:
    from sklearn.datasets import load_digits

    folder.mkdir()
    images = load_digits().images
    paths = []
    for i in range(n):
        paths.append(folder / f"d{i}.png")
        Image.fromarray((images[i] * 255 / 16).astype(np.uint8)).save(paths[-1])
    return paths


def deployment_input(paths: list[Path], meta: dict) -> np.ndarray:
    """What a deployment does with the sidecar: decode in its channel order, resize, scale to [0, 1]."""
    h, w = meta["image_size"]
    arrays = [np.asarray(Image.open(p).convert(meta["channel_order"]).resize((w, h), Image.BILINEAR), np.float32) / 255 for p in paths]
    x = np.stack(arrays)
    return x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    plain = longtail.train(tiny_config(tmp, name="plain")).run_dir
    # tau-norm rewrites the head, logit adjustment offsets the logits: both folded into the graph
    corrected = longtail.train(tiny_config(tmp, name="posthoc", posthoc={"tau_norm": True, "logit_adjust": True, "grid": [1.0]})).run_dir
    # deterministic eval transforms (crop, then antialiased resize) run inside the exported graph
    resized = longtail.train(tiny_config(tmp, name="resized", train={"epochs": 1},
                                         data={"eval_transforms": [{"name": "center_crop", "size": 6}, {"name": "resize", "size": 8}]})).run_dir
    # logit adjustment toward a deployment prior (eval.target_prior) instead of a uniform one
    prior = [0.28] + [0.08] * 9
    toward = longtail.train(tiny_config(tmp, name="target_prior", posthoc={"logit_adjust": True, "target_prior": True, "grid": [1.0]},
                                        eval={"target_prior": prior})).run_dir
    return {"plain": plain, "posthoc": corrected, "resized": resized, "target_prior": toward, "images": digit_images(tmp / "imgs")}


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("run", ["plain", "posthoc", "resized", "target_prior"])
def test_exported_probabilities_match_predict(runs, run, fmt, tmp_path):
    run_dir, images = runs[run], runs["images"]
    if (run, fmt) == ("resized", "onnx"):
        with pytest.raises(LongtailError, match="antialiased resize .* export with --format torchscript"):
            export(run_dir, fmt, tmp_path / "model.onnx")
        assert not list(tmp_path.iterdir())  # nothing half-written
        return
    if run == "posthoc":
        posthoc = rundir.read_json(run_dir / rundir.POSTHOC)
        assert posthoc["tau_norm"]["tau"] == 1.0 and posthoc["logit_adjust"]["tau"] == 1.0
    if run == "target_prior":
        assert rundir.read_json(run_dir / rundir.POSTHOC)["logit_adjust"]["target_prior"] == pytest.approx([0.28] + [0.08] * 9)
    path = export(run_dir, fmt, tmp_path / f"model.{fmt}")
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["class_names"] == rundir.read_json(run_dir / loading.DATA_META)["class_names"]
    rows = api.predict(run_dir, images)
    expected = np.array([[r[c] for c in meta["class_names"]] for r in rows])
    x = deployment_input(images, meta)
    for batch in (x, x[:1]):  # the batch size is dynamic
        got = run_exported(path, batch)
        assert np.abs(got - expected[: len(batch)]).max() < 1e-4


def test_sidecar_describes_the_preprocessing(runs, tmp_path):
    path = export(runs["posthoc"], "onnx", tmp_path / "m.onnx")
    meta = json.loads(sidecar_path(path).read_text())
    data = rundir.read_json(runs["posthoc"] / loading.DATA_META)
    assert meta["input_shape"] == ["batch", 1, 8, 8] and meta["channel_order"] == "L" and meta["input_range"] == [0.0, 1.0]
    assert meta["inside_model"]["mean"] == data["norm_mean"] and meta["inside_model"]["std"] == data["norm_std"]
    assert meta["inside_model"]["posthoc"] == {"tau_norm": {"tau": 1.0}, "logit_adjust": {"tau": 1.0}}
    assert meta["format"] == "onnx"


def test_cli_export_writes_the_default_file(runs):
    out = subprocess.run([sys.executable, "-m", "longtail.cli", "export", str(runs["plain"]), "--format", "torchscript"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (runs["plain"] / "model.pt").is_file() and (runs["plain"] / "model.pt.json").is_file()
    assert "model.pt" in out.stdout


def test_spbl_run_is_refused_in_one_line(tmp_path):
    run_dir = tmp_path / "spbl"
    run_dir.mkdir()
    cfg = tiny_config(tmp_path, name="spbl")
    cfg["spbl"] = {"add_ratios": [1.0]}
    (run_dir / rundir.CONFIG).write_text(dump(load_config(raw=cfg)))
    with pytest.raises(LongtailError, match="SPBL run: its head is a scikit-learn classifier") as e:
        export(run_dir, "onnx")
    assert "\n" not in str(e.value)
    out = subprocess.run([sys.executable, "-m", "longtail.cli", "export", str(run_dir)], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "scikit-learn" in out.stderr


def test_readme_deploy_snippet_gives_predicts_probabilities(tmp_path):
    """The README's Deploy section, pasted after the quickstart: export, then five lines of onnxruntime."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text.split("## Deploy", 1)[1]
    command = section.split("```bash", 1)[1].split("```", 1)[0].split("#", 1)[0].split()
    snippet = section.split("```python", 1)[1].split("```", 1)[0]
    assert len(snippet.strip().splitlines()) == 5
    run_dir = longtail.train(tiny_config(tmp_path, name="quickstart", train={"epochs": 1})).run_dir
    assert run_dir == tmp_path / "runs" / "quickstart"
    root = Path(__file__).resolve().parents[2]
    (tmp_path / "examples").symlink_to(root / "examples")  # the snippet reads one of the README's example images
    image = root / "examples" / "digits" / "3.png"
    assert command[0] == "longtail"
    out = subprocess.run([sys.executable, "-m", "longtail.cli", *command[1:]], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    scope: dict = {}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(snippet, scope)
    finally:
        os.chdir(cwd)
    expected = api.predict(run_dir, [image])[0]
    names = scope["meta"]["class_names"]
    assert np.abs(scope["probs"][0] - np.array([expected[c] for c in names])).max() < 1e-4
