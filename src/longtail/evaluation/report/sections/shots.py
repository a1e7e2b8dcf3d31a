"""The "Shot groups" section: accuracy of the many / medium / few-shot classes, the long-tail view of the metrics."""

from __future__ import annotations

from .... import metrics as M
from ..run import Run, detail_split, split_label
from ..section import Section


def shot_group_sections(run: Run) -> list[Section]:
    """The group tables of the main split, saying why they are missing or which thresholds formed them."""
    split = detail_split(run)
    if split is None:
        return []
    m = run.metrics[split]
    groups = Section(f"Shot groups ({split_label(split)})", tables=M.group_tables(m))
    if not m.get("shots"):
        groups.text.append("No training class counts in results.json: shot groups cannot be formed.")
    elif m.get("shot_rule"):
        groups.text.append(f"Shot thresholds: {m['shot_rule']}.")
    return [groups]
