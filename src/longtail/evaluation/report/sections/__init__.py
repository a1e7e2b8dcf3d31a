"""The report's sections, in page order: each entry takes a ``Run`` and returns its sections.

A builder returns an empty list when the run lacks its content, so the page simply has no such
heading. A new section is one new module here with one builder, added at its place in
``SECTIONS``; the renderers need no change.
"""

from __future__ import annotations

from collections.abc import Callable

from ..run import Run, detail_split
from ..section import Section
from .cohorts import cohort_sections
from .config import config_sections
from .curves import training_curve_sections
from .errors import error_gallery_sections
from .operating_points import operating_point_sections
from .per_class import per_class_sections
from .roc_pr import roc_pr_sections
from .shots import shot_group_sections
from .spbl import spbl_sections
from .split_figures import split_figure_sections
from .summary import summary_sections
from .target_prior import target_prior_sections
from .trust import trust_sections

Builder = Callable[[Run], list[Section]]

#: the decision-support part: ROC / PR, operating points, the deployment prior, the error gallery
DECISION_SECTIONS: tuple[Builder, ...] = (roc_pr_sections, operating_point_sections, target_prior_sections, error_gallery_sections)

SECTIONS: tuple[Builder, ...] = (
    config_sections,
    summary_sections,
    shot_group_sections,
    split_figure_sections,
    *DECISION_SECTIONS,
    trust_sections,
    cohort_sections,
    training_curve_sections,
    per_class_sections,
    spbl_sections,
)


def decision_sections(run: Run) -> list[Section]:
    """ROC / PR curves, the operating-point table, metrics under the deployment prior, the most confident errors."""
    return [s for build in DECISION_SECTIONS for s in build(run)]


def build_sections(run: Run) -> list[Section]:
    """The report's content, independent of the output format: every builder's sections, in order."""
    split = run.main_split
    if split is not None and detail_split(run) is None:
        run.notes.append(f"The {split} metrics in results.json have no per-class table (written by an older version?); rerun `longtail eval`.")
    return [s for build in SECTIONS for s in build(run)]
