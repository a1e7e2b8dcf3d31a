"""Reading a run back: which split the detailed sections use, and the package's light import."""

from __future__ import annotations

import subprocess
import sys

from longtail.evaluation.report.run import detail_split, split_label

from .common import hand_run


def test_detail_split_needs_the_per_class_table(tmp_path) -> None:
    run = hand_run(tmp_path)
    assert run.main_split == "test" and detail_split(run) == "test"
    del run.metrics["test"]["per_class"]
    assert run.main_split == "test" and detail_split(run) is None
    assert detail_split(hand_run(tmp_path, splits=("val",))) == "val"
    assert detail_split(hand_run(tmp_path, splits=())) is None
    assert (split_label("test"), split_label("val")) == ("test", "validation")


def test_importing_the_package_loads_neither_torch_nor_matplotlib() -> None:
    code = "import sys, longtail.evaluation.report; print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
