"""A grid's test decisions, kept beside its results so that paired columns outlive the run folders.

A paired column (:mod:`.paired`) needs every compared cell's test predictions, and run folders are
large and rarely kept (``benchmarks/runs/`` is not committed). For a metric of the predicted class
alone (accuracy, balanced accuracy, macro F1, G-mean, ...) the predicted class of each test image is
all it needs, so ``longtail bench`` writes, per cell, ``<results>.predictions/<dataset>/<cell>.npz``:
the predicted class and the label of every test image, the bootstrap groups, a SHA-256 of the
image ids (to check that two cells saw the same test set in the same order) and the cell's config
hash (a rerun with another config replaces it). CIFAR-10's 10,000 test images take 5 to 7 KB a
cell (benchmarks/results/cifar10_lt_cpu.predictions/), small enough to commit with the CSV. Metrics of
the scores (MAUC, ECE, top-5) cannot be recomputed from it and keep reading the run folders.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import rundir
from ..core.errors import LongtailError
from ..evaluation.intervals import final_test_predictions

#: summary metrics that depend on the predicted class only, so one-hot scores of the archive give the run's own value
DECISION_METRICS: frozenset[str] = frozenset({
    "accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1",
    "weighted_precision", "weighted_recall", "weighted_f1", "gmean", "iba",
})


def archive_root(results_csv: str | Path) -> Path:
    """``benchmarks/results/x.csv`` -> ``benchmarks/results/x.predictions``."""
    return Path(results_csv).with_suffix(".predictions")


def is_holdout(row: dict[str, Any]) -> bool:
    """A CSV row of a holdout cell (an empty ``fold``): the only cells compared, so the only ones kept."""
    return not str(row.get("fold", "") or "").strip()


def cell_archive(root: Path, row: dict[str, Any]) -> Path:
    """The archive file of a holdout cell's CSV row (named like its run directory)."""
    return root / str(row["dataset"]) / f"{row['method']}-s{int(row['seed'])}.npz"


def ids_digest(ids: np.ndarray) -> str:
    """SHA-256 of the test image ids in order: two cells with one digest were tested on the same images."""
    return hashlib.sha256("\n".join(map(str, ids.tolist())).encode("utf-8", "surrogateescape")).hexdigest()


def archive_arrays(run_dir: Path, config_hash: str | None) -> dict[str, np.ndarray]:
    """The run's final test decisions (post-hoc-corrected where the run corrects) as the archive's arrays."""
    p = final_test_predictions(run_dir)
    logits = np.asarray(p["logits"])
    arrays = {
        "predicted": logits.argmax(1).astype(np.int32), "targets": np.asarray(p["targets"]).astype(np.int32),
        "num_classes": np.array(logits.shape[1], dtype=np.int32), "ids_sha256": np.array(ids_digest(np.asarray(p["ids"]))),
        "config_hash": np.array(config_hash or ""),
    }
    if p["groups"] is not None:
        arrays["groups"] = np.unique(np.asarray(p["groups"]).astype(str), return_inverse=True)[1].astype(np.int32)
    return arrays


def save_archive(run_dir: Path, path: Path, config_hash: str | None) -> bool:
    """Write the run's archive to ``path`` atomically; False (nothing written) when the file already holds the same arrays,
    so that re-collecting a grid leaves committed archives byte-identical."""
    arrays = archive_arrays(run_dir, config_hash)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if set(z.files) == set(arrays) and all(np.array_equal(z[k], v) for k, v in arrays.items()):
                    return False
        except (OSError, ValueError):
            pass  # damaged: replaced below
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    rundir.atomic_write_bytes(path, buffer.getvalue())
    return True


def load_archive(path: Path) -> dict[str, Any]:
    """An archive as :func:`~longtail.evaluation.intervals.final_test_predictions` gives a run's predictions:
    one-hot logits of the predicted class (exact for :data:`DECISION_METRICS`), the labels, the groups, the
    ids' digest standing in for the ids, and the config hash it was written for ('' when unknown)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            predicted, targets, classes = z["predicted"], z["targets"].astype(np.int64), int(z["num_classes"])
            digest, groups = str(z["ids_sha256"]), (z["groups"] if "groups" in z.files else None)
            config_hash = str(z["config_hash"]) if "config_hash" in z.files else ""
    except (OSError, ValueError, KeyError) as e:
        raise LongtailError(f"the saved test decisions '{path}' cannot be read ({e}); delete the file and rerun `longtail bench` "
                            "while the cell's run folder exists") from None
    if predicted.shape != targets.shape or predicted.size and not 0 <= int(predicted.min()) <= int(predicted.max()) < classes:
        raise LongtailError(f"the saved test decisions '{path}' are damaged (predicted classes outside 0..{classes - 1}); delete the file "
                            "and rerun `longtail bench` while the cell's run folder exists")
    return {"logits": np.eye(classes)[predicted], "targets": targets, "ids": np.array([digest]), "groups": groups,
            "config_hash": config_hash}


def keep_decisions(rows: Sequence[dict[str, Any]], root: Path) -> int:
    """Archive (or refresh) every holdout row whose run folder still holds its test predictions, the baseline's
    too before any method is compared with it; the count of files written."""
    written = 0
    for row in rows:
        run_dir = Path(row["run_dir"])
        if is_holdout(row) and (run_dir / rundir.PREDICTIONS / "test.npz").is_file():
            written += save_archive(run_dir, cell_archive(root, row), str(row.get("config_hash") or ""))
    return written
