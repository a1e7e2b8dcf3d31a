"""Fixtures of the robustness tests: a finished run that every case must leave byte for byte unchanged."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

import longtail
from longtail import rundir

from .common import digests, small


@pytest.fixture(scope="session")
def finished(tmp_path_factory) -> Path:
    """A finished tiny run (trained once per test process); tests use copies of it."""
    tmp = tmp_path_factory.mktemp("finished")
    return longtail.train(small(tmp, "done")).run_dir


@pytest.fixture
def done(finished, tmp_path) -> tuple[Path, dict[str, str]]:
    """A private copy of the finished run at tmp_path/runs/done, with its file digests."""
    run = tmp_path / "runs" / "done"
    shutil.copytree(finished, run)
    cfg = yaml.safe_load((run / rundir.CONFIG).read_text())
    cfg["output_dir"] = str(tmp_path / "runs")
    (run / rundir.CONFIG).write_text(yaml.safe_dump(cfg, sort_keys=False))
    return run, digests(run)
