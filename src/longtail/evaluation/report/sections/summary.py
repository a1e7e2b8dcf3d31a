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
    intervals = (run.results or {}).get("intervals") or {}
    text = [M.CONVENTIONS]
    if "settings" in intervals:
        note = M.interval_note(intervals["settings"])
        text.append(f"{note[0].upper()}{note[1:]}. Ranges made this way hold the metric's value on the population the test set "
                    f"was drawn from for about {100 * float(intervals['settings']['confidence']):g}% of test sets drawn like this one; "
                    "they say nothing about other data, or about training again with another seed.")
    return [Section("Summary metrics", tables=[summary_table(columns, intervals)], text=text)]
