"""The metrics of one split as a run's ``eval`` section asks for them.

One place decides how stored logits become metrics, so that validation during training, the final
evaluation and ``longtail eval`` agree: the options of :func:`longtail.metrics.compute` the config
selects (shot thresholds, the CDB majority table, the ISIC 2017 protocol) and, with
``eval.unk_class: sigmoid``, MBIT's sigmoid scores with an UNK column instead of a softmax.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import metrics  # looked up per call, so one patched metrics.compute reaches every split

if TYPE_CHECKING:
    from ..core.schema import EvalConfig


def split_metrics(logits: Any, targets: Any, train_counts: Any, class_names: Sequence[str], eval_cfg: "EvalConfig") -> dict[str, Any]:
    """:func:`~longtail.metrics.compute` on one split with the options ``eval_cfg`` sets."""
    options = eval_cfg.metric_options()
    if eval_cfg.unk_class == "sigmoid":
        from .submission import unk_metrics_inputs

        return metrics.compute(targets=targets, **unk_metrics_inputs(logits, class_names, train_counts), **options)
    return metrics.compute(logits, targets, train_counts=train_counts, class_names=class_names, **options)
