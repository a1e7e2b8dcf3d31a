"""Every metric, computed from stored logits, labels and training class counts (arrays in, floats out).

:func:`compute` gives one JSON-ready dict for a split (see :mod:`.classification` for the
conventions); the other modules are its parts, usable alone. The package's face gathers the
names callers use (``longtail.metrics.compute``, ``softmax``, ``format_table``, ...).
"""

from .calibration import ECE_BINS, reliability
from .classification import CONVENTIONS, GMEAN_CORRECTION, IBA_ALPHA, SUMMARY_METRICS, compute
from .inputs import check_counts, check_inputs, softmax, to_numpy
from .ranking import hand_till_mauc, micro_auc, one_vs_rest_auc, pairwise_wins, top_k_accuracy
from .shots import DEFAULT_SHOT_THRESHOLDS, SHOT_GROUPS, resolve_shot_thresholds, shot_groups
from .tables import (PER_CLASS_COLUMNS, SPBL_COLUMNS, fmt, format_table, group_tables, interval_label, interval_note, interval_text, shot_rows,
                     spbl_tables, summary_rows, text_table)

__all__ = [
    "CONVENTIONS", "DEFAULT_SHOT_THRESHOLDS", "ECE_BINS", "GMEAN_CORRECTION", "IBA_ALPHA", "PER_CLASS_COLUMNS",
    "SHOT_GROUPS", "SPBL_COLUMNS", "SUMMARY_METRICS", "check_counts", "check_inputs", "compute", "fmt",
    "format_table", "group_tables", "hand_till_mauc", "interval_label", "interval_note", "interval_text", "micro_auc", "one_vs_rest_auc", "pairwise_wins",
    "reliability", "resolve_shot_thresholds", "shot_groups", "shot_rows", "softmax", "spbl_tables",
    "summary_rows", "text_table", "to_numpy", "top_k_accuracy",
]
