"""Run reports: one self-contained HTML page (+ Markdown) per run directory, and run comparisons.

Everything is read back from the files a run leaves (``config.yaml``, ``metrics.jsonl``,
``results.json``, ``posthoc.json``, ``predictions/*.npz``; layout in docs/architecture.md), so a
report can be rebuilt at any time and a half-finished run still gets one: each missing piece is
named on the page instead of failing.

Layout: ``run`` reads a run directory into a ``Run``; ``sections/`` holds one module per report
section and ``SECTIONS``, their page order; ``figures`` and ``tables`` draw and lay out; ``render``
writes HTML and Markdown; ``comparison`` compares runs; ``cli`` adds the ``report`` and ``compare``
commands (the CLI loads this package by name and calls ``add_commands``). Importing it loads
neither torch nor matplotlib.
"""

from __future__ import annotations

from .cli import add_commands, run_compare, run_report
from .comparison import COMPARE_METRICS, compare, compare_rows
from .figures import LOSS_LABELS, MAX_LABELLED_CLASSES
from .render import render_html, render_markdown, write_report
from .run import SPLITS, Run, load_run
from .section import Section
from .sections import SECTIONS, build_sections, decision_sections

__all__ = [
    "COMPARE_METRICS", "LOSS_LABELS", "MAX_LABELLED_CLASSES", "SECTIONS", "SPLITS", "Run", "Section", "add_commands",
    "build_sections", "compare", "compare_rows", "decision_sections", "load_run", "render_html", "render_markdown",
    "run_compare", "run_report", "write_report",
]
