"""Fixtures of the inference tests: the robustness suite's finished tiny run (one training per test process)."""

from ..robustness.conftest import done, finished  # noqa: F401
