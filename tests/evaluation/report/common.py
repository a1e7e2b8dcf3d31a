"""Runs built by hand for the section tests: known predictions, no training and no run directory files unless a test writes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from longtail import metrics as M
from longtail.evaluation.report import Run

NAMES = ["head", "mid", "tail"]
COUNTS = [200, 50, 5]  # many, medium and few-shot under the fixed 100 / 20 thresholds
TARGETS = np.array([0, 0, 0, 0, 1, 1, 2, 2])
PREDICTED = np.array([0, 0, 0, 1, 1, 1, 2, 0])  # recall: head 3/4, mid 2/2, tail 1/2


def logits(predicted: np.ndarray = PREDICTED, num_classes: int = 3) -> np.ndarray:
    """Logits whose argmax is ``predicted``, with distinct confidences so ranking metrics are defined."""
    z = np.linspace(-0.5, 0.5, len(predicted) * num_classes).reshape(len(predicted), num_classes)
    z[np.arange(len(predicted)), predicted] += 3.0
    return z


def hand_metrics(counts: list[int] | None = COUNTS) -> dict[str, Any]:
    return M.compute(logits(), TARGETS, counts, NAMES)


def hand_run(tmp_path: Path, *, splits: tuple[str, ...] = ("test", "val"), config: dict[str, Any] | None = None,
             history: list[dict[str, Any]] | None = None, **results: Any) -> Run:
    """A ``Run`` as ``load_run`` would return it for a run evaluated on ``splits``; ``results`` adds keys to results.json."""
    metrics = {split: hand_metrics() for split in splits}
    payload = {"class_names": NAMES, "train_counts": COUNTS, **metrics, **results}
    return Run(tmp_path, config=config, history=history or [], results=payload, metrics=metrics)


def write_predictions(run: Run, split: str = "test") -> None:
    """predictions/<split>.npz as evaluation writes it (one unlabelled row, target -1, that the report must skip)."""
    (run.run_dir / "predictions").mkdir(exist_ok=True)
    z = np.vstack([logits(), np.zeros((1, 3))])
    np.savez(run.run_dir / "predictions" / f"{split}.npz", logits=z, targets=np.append(TARGETS, -1))
