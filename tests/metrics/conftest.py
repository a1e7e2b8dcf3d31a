"""Fixtures of the metrics tests."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _quiet_sklearn() -> Iterator[None]:
    """scikit-learn's undefined-metric warnings are expected on the degenerate cases these tests build."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
