"""The "Summary metrics" section: the headline metrics of test, test after the post-hoc correction, and validation side by side."""

from __future__ import annotations

from .... import metrics as M
from ..run import Run
from ..section import Section
from ..tables import summary_columns, summary_table


def summary_sections(run: Run) -> list[Section]:
    """One column per evaluated split (and the post-hoc test column); none when nothing was evaluated."""
    columns = summary_columns(run)
    if not columns:
        return []
    return [Section("Summary metrics", tables=[summary_table(columns)], text=[M.CONVENTIONS])]
