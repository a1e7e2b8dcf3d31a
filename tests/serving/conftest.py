"""Fixtures of the serving tests: one tiny trained run with the whole trust layer (temperature, sets, abstention)."""

from __future__ import annotations

from pathlib import Path

import pytest

import longtail

from ..helpers import tiny_config

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "digits"


@pytest.fixture(scope="session")
def served_run(tmp_path_factory) -> Path:
    """A 1-epoch digits run whose trust.json holds a temperature, a conformal fit and an abstention threshold."""
    tmp = tmp_path_factory.mktemp("served")
    cfg = tiny_config(tmp, name="served", train={"epochs": 1, "threads": 1},
                      posthoc={"temperature": "scalar"},
                      eval={"conformal": {"alpha": 0.2, "mode": "marginal"}, "selective": {"target_coverage": 0.8}})
    cfg["data"] = {**cfg["data"], "long_tail": None, "max_per_class": 30}
    return longtail.train(cfg).run_dir


@pytest.fixture(scope="session")
def client(served_run):
    """A FastAPI TestClient on the served run (no socket: requests go through the app in-process)."""
    from fastapi.testclient import TestClient

    from longtail.serving.app import Service, create_app

    with TestClient(create_app(Service(served_run), max_upload_bytes=200_000)) as c:
        yield c
