"""The "Per-class metrics" section: one row per class on the main split, where the tail classes show."""

from __future__ import annotations

from ..run import Run, detail_split, split_label
from ..section import Section
from ..tables import per_class_table


def per_class_sections(run: Run) -> list[Section]:
    """The per-class table; none when the main split's metrics lack it."""
    split = detail_split(run)
    if split is None:
        return []
    return [Section(f"Per-class metrics ({split_label(split)})", tables=[per_class_table(run.metrics[split])])]
