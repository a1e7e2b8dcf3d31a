"""Writing a run's files so that a kill never leaves a half-written one: atomic writes, JSON / JSON lines, saved predictions."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from ..core.errors import LongtailError
from .layout import LAST, METRICS, PREDICTIONS


# ------------------------------------------------------------------------------ safe writes
def file_mode() -> int:
    """0666 minus the umask: what open() would give, unlike mkstemp's 0600."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_error(path: Path, e: OSError) -> LongtailError:
    """A failed write (disk full, read-only, permissions) as one line naming the file and the fix."""
    reason = e.strerror or str(e)
    fix = "free disk space" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "make the folder writable"
    return LongtailError(
        f"cannot write '{path}' ({reason}); {fix} and run again (a run that has {LAST} continues with `longtail train --resume RUN_DIR`)"
    )


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write via a temp file + rename, so readers see the old or the new file, never half of one.

    ``write`` fills the open temp file; the file gets the user's umask (not mkstemp's 0600)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as e:
        raise write_error(path, e) from None
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise write_error(path, e) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """``data`` into ``path`` atomically."""
    atomic_write(path, lambda f: f.write(data))


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Save so that a crash mid-write never leaves a truncated checkpoint behind."""
    atomic_write(path, lambda f: torch.save(obj, f))


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, default=_json_default).encode())


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def append_jsonl(path: Path, obj: dict[str, Any]) -> None:
    try:
        with open(path, "a") as f:
            f.write(json.dumps(obj, default=_json_default) + "\n")
            f.flush()
    except OSError as e:
        raise write_error(path, e) from None


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


def save_predictions(run_dir: Path, split: str, logits: np.ndarray, targets: np.ndarray, ids: list[str], features: np.ndarray | None) -> Path:
    path = run_dir / PREDICTIONS / f"{split}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"logits": logits.astype(np.float32), "targets": targets.astype(np.int64), "ids": np.asarray(ids, dtype=str)}
    if features is not None:
        arrays["features"] = features.astype(np.float32)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    try:
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise write_error(path, e) from None
    return path


def load_predictions(run_dir: Path, split: str) -> dict[str, np.ndarray]:
    path = Path(run_dir) / PREDICTIONS / f"{split}.npz"
    if not path.is_file():
        raise LongtailError(f"no saved {split} predictions in '{run_dir}'; run `longtail eval {run_dir} --split {split}` first")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
