"""What a run directory holds, read back for the report: every piece may be missing.

Missing or damaged files become notes on the page (a half-finished run still gets a report);
only an unreadable ``results.json`` is an error, since guessing its content would mislead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ... import metrics as M
from ...core.errors import LongtailError
from ..posthoc import load_posthoc

SPLITS = ("test", "val")


@dataclass
class Run:
    """What a run directory holds; every piece may be missing (see ``notes``)."""

    run_dir: Path
    config: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    results: dict[str, Any] | None = None
    posthoc: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # split -> metrics.compute dict
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str((self.config or {}).get("name") or self.run_dir.name)

    @property
    def class_names(self) -> list[str] | None:
        names = (self.results or {}).get("class_names")
        return [str(n) for n in names] if names else None

    @property
    def train_counts(self) -> list[int] | None:
        counts = (self.results or {}).get("train_counts")
        return [int(c) for c in counts] if counts is not None else None

    def predictions(self, split: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(logits, targets) of the labelled rows of predictions/<split>.npz, or None."""
        return _predictions(self, split)

    @property
    def main_split(self) -> str | None:
        """'test' when there is a test split, else 'val', else None."""
        return next((s for s in SPLITS if s in self.metrics), None)


def detail_split(run: Run) -> str | None:
    """The main split when its metrics carry the per-class table and confusion matrix, else None.

    Results written by older versions lack them; the sections that need them (shot groups,
    figures, per-class and SPBL tables) are then left out instead of failing."""
    split = run.main_split
    if split is not None and not {"per_class", "confusion_matrix"} <= set(run.metrics[split]):
        return None
    return split


def split_label(split: str) -> str:
    """The split's name as section titles spell it."""
    return "test" if split == "test" else "validation"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise LongtailError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); rerun `longtail eval` to rewrite it") from None


def load_run(run_dir: str | Path) -> Run:
    """Read a run directory; missing files become notes, never errors."""
    root = Path(run_dir)
    if not root.is_dir():
        raise LongtailError(f"run directory '{root}' not found; pass the folder a `longtail train` run wrote (under runs/)")
    run = Run(root)
    cfg_path = root / "config.yaml"
    if cfg_path.is_file():
        try:
            loaded = yaml.safe_load(cfg_path.read_text())
            run.config = loaded if isinstance(loaded, dict) else None
        except yaml.YAMLError:
            run.notes.append("config.yaml is not valid YAML; the configuration summary is missing.")
    else:
        run.notes.append("No config.yaml: the configuration summary is missing.")
    run.history = _read_history(root / "metrics.jsonl", run.notes)
    results_path = root / "results.json"
    if results_path.is_file():
        run.results = _read_json(results_path)
    else:
        run.notes.append("No results.json: the run has not been evaluated yet (run `longtail eval RUN_DIR`).")
    run.posthoc = load_posthoc(root)
    _collect_metrics(run)
    return run


def _read_history(path: Path, notes: list[str]) -> list[dict[str, Any]]:
    if not path.is_file():
        notes.append("No metrics.jsonl: no training curves.")
        return []
    rows, bad = [], 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad += 1  # e.g. the last line of a run killed mid-write
            continue
        if isinstance(row, dict):
            rows.append(row)
    if bad:
        notes.append(f"metrics.jsonl: skipped {bad} unreadable line(s).")
    return rows


def _collect_metrics(run: Run) -> None:
    """Metrics per split from results.json, else recomputed from predictions/<split>.npz."""
    results = run.results or {}
    for split in SPLITS:
        if isinstance(results.get(split), dict):
            run.metrics[split] = results[split]
            continue
        npz = run.run_dir / "predictions" / f"{split}.npz"
        if npz.is_file():
            with np.load(npz) as data:
                if "logits" not in data or "targets" not in data:
                    run.notes.append(f"{npz.name} lacks 'logits' or 'targets'; {split} metrics skipped.")
                    continue
                logits, targets = data["logits"], data["targets"]
            labelled = targets >= 0
            if labelled.any():
                run.metrics[split] = M.compute(logits[labelled], targets[labelled], run.train_counts, run.class_names)
    if "test" not in run.metrics:
        run.notes.append("No test split (or no test labels): the metrics below are on the validation split.")
    if not run.metrics:
        run.notes.append("No evaluated split at all: no metrics, tables or figures.")


def _predictions(run: Run, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    npz = run.run_dir / "predictions" / f"{split}.npz"
    if not npz.is_file():
        return None
    with np.load(npz) as data:
        if "logits" not in data or "targets" not in data:
            return None
        logits, targets = data["logits"], data["targets"]
    labelled = targets >= 0
    return (logits[labelled], targets[labelled]) if labelled.any() else None
