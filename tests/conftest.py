"""Shared test settings: one torch thread per test process keeps xdist workers from oversubscribing 2 cores."""

import os

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("LONGTAIL_CACHE", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "longtail-data"))


@pytest.fixture
def repo_root() -> str:
    return os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
