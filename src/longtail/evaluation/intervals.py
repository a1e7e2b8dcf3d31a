"""How far a run's test numbers might be off, and whether two runs really differ (issue #27).

Every summary metric of the test split gets a bootstrap confidence interval (``eval.bootstrap``),
written to results.json's ``intervals``, printed by ``eval`` and shown by the report and ``compare``.
A resample draws images, or whole groups when the split has them (HAM10000: the images of one lesion
move together, since they are not independent evidence). Two runs scored on the same test images
are compared *paired*: one set of resampled indices scores both, so the interval is that of the
difference, not two overlapping intervals; McNemar's exact test is added for accuracy. With more
than two runs, every run is compared with the first, and the p-values of each metric are Holm-adjusted
over those comparisons.

The arithmetic lives in :mod:`longtail.metrics.bootstrap`; this module decides what is resampled and
reads stored predictions (``predictions/test.npz``: its ``posthoc_logits`` are what a run's
``test_posthoc`` metrics score, its ``bootstrap_groups`` the resampling unit), so no model is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import rundir
from ..core.errors import LongtailError
from ..core.schema import BootstrapConfig
from ..metrics import bootstrap as B

#: the metrics a paired comparison reports (``compare``'s columns)
PAIRED_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "gmean", "mauc", "macro_auc", "ece")


# ------------------------------------------------------------------------------- one run
def resampling_groups(boot: BootstrapConfig, dataset: Any, bundle: Any) -> np.ndarray | None:
    """The unit a resample draws, per image of ``dataset``: its source group ('auto', when the split has
    groups), a metadata column's value (an image without one is its own group), or None (images)."""
    if dataset is None or boot.groups == "none":
        return None
    if boot.groups == "auto":
        return None if dataset.groups is None else np.asarray(dataset.groups).astype(str)
    ids = [str(i) for i in dataset.ids]
    values = bundle.columns(ids, [boot.groups])[boot.groups]
    return np.asarray([f"{boot.groups}={v}" if v not in (None, "") else f"image={i}" for v, i in zip(values, ids)])


def settings(boot: BootstrapConfig, groups: np.ndarray | None, targets: np.ndarray) -> dict[str, Any]:
    """What the intervals are (JSON): resamples, level, method, seed and the unit resampled."""
    labelled = np.asarray(targets) >= 0
    unit = "images" if groups is None else (f"groups ({boot.groups})" if boot.groups != "auto" else "the split's source groups")
    out: dict[str, Any] = {"resamples": boot.resamples, "confidence": boot.confidence, "method": boot.method, "seed": boot.seed, "unit": unit,
                           "images": int(labelled.sum())}
    if groups is not None:
        out["groups"] = len(set(np.asarray(groups)[labelled].tolist()))
    return out


def _labelled_groups(groups: np.ndarray | None, targets: np.ndarray) -> np.ndarray | None:
    return None if groups is None else np.asarray(groups)[np.asarray(targets) >= 0]


def split_intervals(logits: np.ndarray, targets: np.ndarray, groups: np.ndarray | None, boot: BootstrapConfig) -> dict[str, Any]:
    """{metric: {estimate, low, high, ...}} on the labelled rows of one split."""
    return B.bootstrap_intervals(logits, targets, groups=_labelled_groups(groups, targets), resamples=boot.resamples,
                                 confidence=boot.confidence, method=boot.method, seed=boot.seed)


def run_intervals(logits: np.ndarray, targets: np.ndarray, posthoc_logits: np.ndarray | None, groups: np.ndarray | None,
                  boot: BootstrapConfig, split: str = "test") -> dict[str, Any]:
    """results.json's ``intervals``: the settings, and the intervals of ``split`` (and ``<split>_posthoc``)."""
    if boot.resamples == 0:
        return {"note": "eval.bootstrap.resamples is 0: no intervals"}
    out: dict[str, Any] = {"settings": settings(boot, groups, targets), split: split_intervals(logits, targets, groups, boot)}
    if posthoc_logits is not None:
        out[f"{split}_posthoc"] = split_intervals(posthoc_logits, targets, groups, boot)
    return out


# ------------------------------------------------------------------------------- stored predictions
def final_test_predictions(run_dir: str | Path) -> dict[str, Any]:
    """The test predictions a run's headline metrics score: {logits, targets, ids, groups}.

    The post-hoc-corrected logits when the run has a correction (stored by the run; a run written before
    they were stored is corrected here when it only used logit adjustment)."""
    run = Path(run_dir)
    saved = rundir.load_predictions(run, "test")
    if (saved["targets"] < 0).all():
        raise LongtailError(f"run '{run}' has an unlabelled test split (a challenge submission): nothing to compare on")
    logits = saved.get("posthoc_logits")
    if logits is None:
        from .posthoc import apply_posthoc

        posthoc = rundir.read_json(run / rundir.POSTHOC) if (run / rundir.POSTHOC).is_file() else {}
        if "tau_norm" in posthoc:
            raise LongtailError(f"run '{run}' stores no post-hoc-corrected test logits; run `longtail eval {run}` to store them")
        counts = rundir.read_json(run / rundir.RESULTS, keys=("train_counts",))["train_counts"] if posthoc else None
        logits = apply_posthoc(saved["logits"], None, posthoc, None, None, counts) if posthoc else saved["logits"]
    return {"logits": np.asarray(logits, dtype=np.float64), "targets": saved["targets"], "ids": saved["ids"], "groups": saved.get("bootstrap_groups")}


def stored_settings(run_dir: Path) -> BootstrapConfig:
    """The bootstrap settings of a run's stored intervals; the defaults for a run without them (or with them off:
    a paired comparison is what the user asked for)."""
    path = run_dir / rundir.RESULTS
    stored = ((rundir.read_json(path) if path.is_file() else {}).get("intervals") or {}).get("settings") or {}
    return BootstrapConfig(**{k: stored[k] for k in ("resamples", "confidence", "method", "seed") if k in stored})


def check_same_test_set(runs: Sequence[Path], preds: Sequence[dict[str, Any]]) -> None:
    """Every run's stored test predictions cover the first's images and labels, in order, with its classes."""
    first = preds[0]
    for run, p in zip(runs[1:], preds[1:]):
        if p["ids"].shape != first["ids"].shape or not (p["ids"] == first["ids"]).all() or not (p["targets"] == first["targets"]).all():
            raise LongtailError(f"runs '{runs[0]}' and '{run}' were tested on different images; a paired comparison needs one test set "
                                "(the same data and data.split)")
        if p["logits"].shape[1] != first["logits"].shape[1]:
            raise LongtailError(f"runs '{runs[0]}' and '{run}' have different classes; compare runs of one dataset")


def paired_comparison(run_dirs: Sequence[str | Path], boot: BootstrapConfig | None = None, metrics: Sequence[str] = PAIRED_METRICS) -> dict[str, Any]:
    """Every run against the first on their common test set: per metric the difference (run - first), its paired
    bootstrap interval and p-value (Holm-adjusted over the comparisons when there are more than one), and
    McNemar's exact test on accuracy. ``boot`` defaults to the settings of the first run's stored intervals
    (its ``eval.bootstrap``), or the defaults when it stored none."""
    runs = [Path(d) for d in run_dirs]
    if len(runs) < 2:
        raise LongtailError("a paired comparison needs two runs or more")
    if boot is None:
        boot = stored_settings(runs[0])
    preds = [final_test_predictions(r) for r in runs]
    check_same_test_set(runs, preds)
    base = preds[0]
    groups = _labelled_groups(base["groups"] if boot.groups != "none" else None, base["targets"])
    labelled = base["targets"] >= 0
    y = base["targets"][labelled]
    comparisons = []
    for run, p in zip(runs[1:], preds[1:]):
        diffs = B.paired_bootstrap(p["logits"][labelled], base["logits"][labelled], y, groups=groups, resamples=boot.resamples,
                                   confidence=boot.confidence, method=boot.method, seed=boot.seed, metrics=tuple(metrics))
        right_run, right_base = p["logits"][labelled].argmax(1) == y, base["logits"][labelled].argmax(1) == y
        comparisons.append({"run": str(run), "metrics": diffs, "mcnemar": B.mcnemar(right_run, right_base)})
    correction = "holm" if len(comparisons) > 1 else "none"
    if correction == "holm":
        for m in metrics:
            adjusted = B.holm([c["metrics"][m]["p_value"] for c in comparisons])
            for c, q in zip(comparisons, adjusted):
                c["metrics"][m]["p_holm"] = float(q)
    unit = "images" if groups is None else "the split's source groups"
    return {"baseline": str(runs[0]), "settings": {"resamples": boot.resamples, "confidence": boot.confidence, "method": boot.method,
                                                  "seed": boot.seed, "unit": unit, "images": int(labelled.sum()), "correction": correction},
            "comparisons": comparisons}
