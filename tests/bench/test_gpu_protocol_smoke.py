"""benchmarks/gpu_protocol.py --smoke: the GPU protocol's cells, overrides and code path on the CPU, tiny.

The data are made here in the two archives' own layouts (CIFAR-10 JPEG folders, HAM10000 images and
metadata CSV), small enough for seconds, and passed with --data-dir, so the test needs neither
../shared/data nor a GPU. What a GPU run adds (CUDA, the images in GPU memory) is the same code with
train.device=cuda.
"""

from __future__ import annotations

import csv
import importlib.util
import math
import tarfile
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
HAM = ["mel", "nv", "bcc", "akiec", "bkl", "df", "vasc"]


def _protocol():
    spec = importlib.util.spec_from_file_location("gpu_protocol", ROOT / "benchmarks" / "gpu_protocol.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _image(path: Path, rng: np.random.Generator, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, format="PNG")  # PIL sniffs PNG bytes in a .jpg


def _tar(folder: Path, archive: Path) -> None:
    with tarfile.open(archive, "w:gz") as t:
        t.add(folder, arcname=".")


def make_data(root: Path) -> Path:
    """cifar10_jpeg.tar.gz (a class i of about 100 * 0.01^(i/9) + 8 train images: IR 100 leaves every class some) and
    ham10000_200x150.tar.gz (8 lesions per class), the file names the recipes' data.source.root name."""
    rng = np.random.default_rng(0)
    for i, name in enumerate(CIFAR10):
        for k in range(int(100 * 0.01 ** (i / 9)) + 8):
            _image(root / "cifar" / "cifar10" / "train" / name / f"{k:04d}.jpg", rng, (32, 32))
        for k in range(4):
            _image(root / "cifar" / "cifar10" / "test" / name / f"{k:04d}.jpg", rng, (32, 32))
    rows = []
    for c, dx in enumerate(HAM):
        for k in range(8):
            image_id = f"ISIC_{c * 100 + k:07d}"
            _image(root / "ham" / "images" / f"{image_id}.jpg", rng, (20, 15))
            rows.append([f"HAM_{c * 100 + k:07d}", image_id, dx, "histo", "50.0", "male", "back"])
    with open(root / "ham" / "HAM10000_metadata.csv", "w", newline="") as f:
        csv.writer(f).writerows([["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"], *rows])
    data = root / "data"
    data.mkdir()
    _tar(root / "cifar", data / "cifar10_jpeg.tar.gz")
    _tar(root / "ham", data / "ham10000_200x150.tar.gz")
    return data


def test_smoke_writes_one_row_per_cell_from_the_device_path(tmp_path, monkeypatch):
    data = make_data(tmp_path)
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)  # the script moves to the repository root; this brings the test back
    gpu_protocol = _protocol()
    assert gpu_protocol.main(["--smoke", "--out", str(out), "--data-dir", str(data),
                              "--ham-config", "configs/ham10000/ce_pretrained.yaml"]) == 0
    with open(out / "gpu_protocol_smoke.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], r["seed"]) for r in rows] == [("cifar10_lt_ce", "0"), ("cifar10_lt_ldam_drw", "0"), ("ham10000_ce_pretrained", "0")]
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    for r in rows:
        assert r["machine"].endswith(f"CUDA: {device}")  # on a GPU the column names it
        for metric in ("accuracy", "balanced_accuracy", "macro_f1", "mauc", "val_balanced_accuracy", "train_seconds"):
            assert math.isfinite(float(r[metric])), (r["method"], metric)
        cfg = yaml.safe_load((Path(r["run_dir"]) / "config.yaml").read_text())
        assert cfg["data"]["device_resident"] is True and cfg["train"]["precision"] == "bf16" and cfg["train"]["channels_last"] is True
        assert cfg["train"]["device"] == "cpu" and cfg["data"]["source"]["root"].startswith(str(data))
    ham = yaml.safe_load((Path(rows[2]["run_dir"]) / "config.yaml").read_text())
    assert ham["data"]["image_size"] == 32 and ham["data"]["train_transforms"][0]["size"] == 32  # the crop follows the input size
    assert not (ROOT / "benchmarks" / "results" / "gpu_protocol_smoke.csv").exists()


def test_the_gpu_run_refuses_to_start_without_a_gpu(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    gpu_protocol = _protocol()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_protocol.main(["--out", str(tmp_path / "out")]) == 2
    assert "needs a CUDA GPU and none is visible" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_recipe_at_another_size_scales_its_progressive_stages(tmp_path):
    gpu_protocol = _protocol()
    recipe = tmp_path / "progressive.yaml"
    recipe.write_text(yaml.safe_dump({
        "base": str(ROOT / "configs" / "ham10000" / "ce_pretrained.yaml"),
        "stages": [{"name": "head_warmup", "epochs": 1, "freeze_backbone": True},
                   {"name": "small", "epochs": 3, "image_size": 112}, {"name": "full", "epochs": 4}],
    }))
    out = gpu_protocol.size_overrides(str(recipe), 224)
    # 112 of 144 px is 174 of 224 (round(112 * 224 / 144) = 174); the crop follows the input size; a stage without one keeps none
    assert out == ["data.image_size=224", "data.train_transforms.0.size=224", "stages.1.image_size=174"]
