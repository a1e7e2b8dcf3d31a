"""Shared helpers of the robustness tests: a tiny finished run, the CLI in-process, digests."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from longtail.cli.commands import main

from ..helpers import tiny_config

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


# ------------------------------------------------------------------------------ helpers
def digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (relative path -> hex)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def small(tmp: Path, name: str, **sections) -> dict:
    """The digits quickstart, tiny: 1 epoch, at most 20 images per class and split."""
    cfg = tiny_config(tmp, name=name, **sections)
    cfg["data"] = {**cfg["data"], "long_tail": None, "max_per_class": 20, **sections.get("data", {})}
    cfg["train"] = {**cfg["train"], "epochs": 1, "threads": 1, **sections.get("train", {})}
    return cfg


def write_yaml(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli(capsys, *args: str) -> tuple[int, list[str]]:
    """Run ``longtail ARGS`` in-process: (exit status, the lines it wrote to stderr starting with 'error:')."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.startswith("error:")]


def one_error(lines: list[str], *parts: str) -> str:
    """The single 'error:' line, checked to contain every one of ``parts``."""
    assert len(lines) == 1, lines
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


def image_folder(root: Path, per_class: int = 6, size: int = 8) -> Path:
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def folder_config(tmp: Path, root: Path, name: str = "files", **source) -> dict:
    return small(tmp, name, data={
        "source": {"name": "image_folder", "root": str(root), **source}, "split": {"val": 0.25, "test": 0.25},
        "train_transforms": [], "batch_size": 4, "image_size": 8,
    })


def csv_config(tmp: Path, rows: list[tuple[str, str]], root: Path, name: str = "csvrun", **source) -> dict:
    f = tmp / f"{name}.csv"
    f.write_text("image,label\n" + "".join(f"{p},{lab}\n" for p, lab in rows))
    return small(tmp, name, data={
        "source": {"name": "csv", "file": str(f), "root": str(root), **source},
        "split": {"val": 0.25, "test": 0.25}, "train_transforms": [], "batch_size": 4, "image_size": 8,
    })


def csv_rows(root: Path) -> list[tuple[str, str]]:
    return [(f"{c}/{i}.png", c) for c in ("a", "b") for i in range(6)]
