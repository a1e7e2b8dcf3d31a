"""The run directory: everything needed to reproduce, resume and evaluate a run lives in it."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import LongtailError

CONFIG = "config.yaml"
ENVIRONMENT = "environment.json"
SPLITS = "splits.json"
METRICS = "metrics.jsonl"
RESULTS = "results.json"
POSTHOC = "posthoc.json"
LAST = "checkpoints/last.pt"
BEST = "checkpoints/best.pt"
PREDICTIONS = "predictions"

_PACKAGES = ("longtail", "torch", "torchvision", "numpy", "scikit-learn", "imbalanced-learn", "timm", "pydantic")


def prepare(run_dir: Path, overwrite: bool, resume: bool) -> None:
    """Create the run directory; refuse to clobber an existing run unless asked to."""
    if resume:
        if not (run_dir / LAST).is_file() and not (run_dir / "paces").is_dir():  # paces/: an SPBL run
            raise LongtailError(f"cannot resume: '{run_dir}' has no {LAST}; start a new run without --resume")
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise LongtailError(
                f"run directory '{run_dir}' already exists; pass --overwrite to replace it, "
                f"--resume {run_dir} to continue it, or name=<new name> for a new run"
            )
        shutil.rmtree(run_dir)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run_dir / PREDICTIONS).mkdir(exist_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Save so that a crash mid-write never leaves a truncated checkpoint behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, default=_json_default).encode())


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def append_jsonl(path: Path, obj: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(obj, default=_json_default) + "\n")
        f.flush()


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    """Replace a JSON-lines file atomically (a crash leaves the old or the new file, never half)."""
    atomic_write_bytes(path, "".join(json.dumps(r, default=_json_default) + "\n" for r in records).encode())


def truncate_metrics(run_dir: Path, finished_epochs: int) -> None:
    """Drop log lines of an epoch that was interrupted after logging but before its checkpoint."""
    path = run_dir / METRICS
    write_jsonl(path, [r for r in read_jsonl(path) if r.get("epoch", 0) <= finished_epochs])


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not Path(path).is_file():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def environment(seed: int, weights: dict[str, Any] | None = None) -> dict[str, Any]:
    """Seed, package versions, git revision, machine and starting weights: enough to say what produced a number.

    ``weights`` is the pretrained-weights record (source, file, sha256; see
    ``longtail.models.provenance``), None for a random start.
    """
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "seed": seed,
        "packages": versions,
        "python": sys.version.split()[0],
        "git_revision": git_revision(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "command": " ".join(sys.argv),
        "weights": weights,
    }


def git_revision() -> str | None:
    """The revision of the longtail checkout (with '+dirty' when modified), or None outside git."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=5)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def save_predictions(run_dir: Path, split: str, logits: np.ndarray, targets: np.ndarray, ids: list[str], features: np.ndarray | None) -> Path:
    path = run_dir / PREDICTIONS / f"{split}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"logits": logits.astype(np.float32), "targets": targets.astype(np.int64), "ids": np.asarray(ids, dtype=str)}
    if features is not None:
        arrays["features"] = features.astype(np.float32)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    return path


def load_predictions(run_dir: Path, split: str) -> dict[str, np.ndarray]:
    path = Path(run_dir) / PREDICTIONS / f"{split}.npz"
    if not path.is_file():
        raise LongtailError(f"no saved {split} predictions in '{run_dir}'; run `longtail eval {run_dir} --split {split}` first")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
