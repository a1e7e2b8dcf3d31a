"""The run directory: everything needed to reproduce, resume and evaluate a run lives in it."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from .errors import LongtailError
from .wording import option

CONFIG = "config.yaml"
ENVIRONMENT = "environment.json"
SPLITS = "splits.json"
METRICS = "metrics.jsonl"
RESULTS = "results.json"
POSTHOC = "posthoc.json"
LAST = "checkpoints/last.pt"
BEST = "checkpoints/best.pt"
PREDICTIONS = "predictions"
PACES = "paces"  # SPBL: one engine run per pace, paces/<k>/

_PACKAGES = ("longtail", "torch", "torchvision", "numpy", "scikit-learn", "imbalanced-learn", "timm", "pydantic")


#: written when a run directory is created; ``--overwrite`` only replaces folders that have it
MARKER = ".longtail-run"
_STAGING = ".staging-"
_REPLACED = ".replaced-"


# ------------------------------------------------------------------------------ safe writes
def _file_mode() -> int:
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
        os.fchmod(fd, _file_mode())
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


def clean_temp_files(run_dir: Path) -> list[Path]:
    """Remove temp files a killed write left behind (``checkpoints/.last.pt.*`` and the like)."""
    removed = []
    paces = sorted(p for p in (run_dir / PACES).glob("*") if p.is_dir())
    for folder in (run_dir, run_dir / "checkpoints", run_dir / PREDICTIONS, *paces, *(p / "checkpoints" for p in paces)):
        if folder.is_dir():
            for f in folder.iterdir():
                if f.name.startswith(".") and f.is_file() and f.name != MARKER and _is_temp_name(f.name):
                    f.unlink(missing_ok=True)
                    removed.append(f)
    return removed


def _is_temp_name(name: str) -> bool:
    # atomic_write_bytes / atomic_torch_save: ".<file>.<random>"; save_predictions: ".<split>.tmp.npz"
    return name.endswith(".tmp.npz") or any(name.startswith(f".{Path(rel).name}.") for rel in _WRITTEN)


_WRITTEN = (MARKER, CONFIG, ENVIRONMENT, SPLITS, METRICS, RESULTS, POSTHOC, LAST, BEST, "data.json", "pace.json", "classifier.skops")


# ------------------------------------------------------------------------------ the run lock
class RunLock:
    """An exclusive lock on one run directory, held by the process that writes the run.

    The lock is ``fcntl.flock`` on ``<output_dir>/.<name>.lock`` (beside the run, so that it
    survives the run directory being swapped); the kernel releases it when the process exits or
    dies. The file holds the holder's pid for the error message, and is removed on release.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir.parent / f".{self.run_dir.name}.lock"
        self._fd: int | None = None
        self._made: list[Path] = []

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        self._made = _make_parents(self.run_dir.parent)
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, _file_mode())
            except OSError as e:
                raise LongtailError(f"cannot create the lock file '{self.path}' ({e.strerror}); set output_dir to a writable folder") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_holder(fd)
                os.close(fd)
                raise LongtailError(
                    f"run directory '{self.run_dir}' is in use by {holder}; wait for it to finish "
                    "or stop it, then retry (two writers would interleave one run)"
                ) from None
            try:  # the holder before us may have removed the file after we opened it: lock the live one
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n{' '.join(sys.argv)[:300]}\n".encode())
        self._fd = fd

    def release(self, remove_made_parents: bool = False) -> None:
        """Unlock and remove the lock file (removal first, so a waiter never locks a stale file)."""
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None
        if remove_made_parents:
            for d in reversed(self._made):
                with contextlib.suppress(OSError):
                    d.rmdir()  # only when still empty


def _make_parents(folder: Path) -> list[Path]:
    """mkdir -p ``folder``; the folders it created (for cleanup), or a one-line error."""
    missing = [p for p in [folder, *folder.parents] if not p.exists()]
    if folder.exists() and not folder.is_dir():
        raise LongtailError(f"output_dir '{folder}' is a file, not a folder; set output_dir to a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise LongtailError(f"output_dir '{folder}' cannot be created: a file is in the way; set output_dir to a folder") from None
    except OSError as e:
        raise LongtailError(f"output_dir '{folder}' cannot be created ({e.strerror}); set output_dir to a writable folder") from None
    return list(reversed(missing))


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        first = os.read(fd, 512).decode(errors="replace").splitlines()
    except OSError:
        first = []
    if first and first[0].strip().isdigit():
        cmd = f" ({first[1].strip()})" if len(first) > 1 and first[1].strip() else ""
        return f"process {first[0].strip()}{cmd}"
    return "another process"


# ------------------------------------------------------------------------------ run directories
def resumable(path: Path) -> bool:
    """Whether ``path`` holds a checkpoint ``--resume`` can continue from (its own, or an SPBL pace's)."""
    return (path / LAST).is_file() or any((path / PACES).glob(f"*/{LAST}"))


def is_run(path: Path) -> bool:
    """Whether ``path`` is a longtail run directory (marker file, or the files of an older run)."""
    return (path / MARKER).is_file() or ((path / CONFIG).is_file() and (path / "checkpoints").is_dir())


def check_new(run_dir: Path, overwrite: bool) -> bool:
    """Whether ``run_dir`` holds a run that a new run replaces (``--overwrite``); refuse anything else."""
    if run_dir.exists() and not run_dir.is_dir():
        raise LongtailError(f"run directory '{run_dir}' is a file; remove it or choose another name=")
    if not taken(run_dir):
        return False
    if not overwrite:
        raise LongtailError(
            f"run directory '{run_dir}' already exists; pass {option('overwrite')} to replace it, "
            f"{option('resume', run_dir)} to continue it, or name=<new name> for a new run"
        )
    if not is_run(run_dir):
        raise LongtailError(f"'{run_dir}' is not a longtail run directory (no {MARKER}); {option('overwrite')} only replaces runs, choose another name= or output_dir=")
    return True


def taken(run_dir: Path) -> bool:
    """Whether a new run may not simply start in ``run_dir``: something (not an empty folder) is there."""
    return run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir()))


def next_free(run_dir: Path, start: int = 2) -> Path:
    """The first of ``<name>-2``, ``<name>-3``, ... beside ``run_dir`` that is not :func:`taken`."""
    k = start
    while taken(run_dir.with_name(f"{run_dir.name}-{k}")):
        k += 1
    return run_dir.with_name(f"{run_dir.name}-{k}")


def create(run_dir: Path) -> None:
    """Make an empty run directory with its marker and sub-folders."""
    try:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        (run_dir / PREDICTIONS).mkdir(exist_ok=True)
    except OSError as e:
        raise LongtailError(f"run directory '{run_dir}' cannot be created ({e.strerror}); set output_dir to a writable folder") from None
    write_json(run_dir / MARKER, {"longtail_run": 1})


def staging_dir(run_dir: Path, copy: bool = False) -> Path:
    """A fresh sibling folder where a replacement (or extension) of ``run_dir`` is built.

    With ``copy`` it starts as a copy of the run (to extend a finished run without touching it).
    Only call it holding the run's :class:`RunLock`.
    """
    path = run_dir.parent / f".{run_dir.name}{_STAGING}{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    if copy:
        try:
            shutil.copytree(run_dir, path)
        except OSError as e:
            shutil.rmtree(path, ignore_errors=True)
            raise write_error(path, e) from None
    else:
        create(path)
    return path


def commit(staging: Path, run_dir: Path) -> None:
    """Swap the finished ``staging`` folder in for ``run_dir``; the old run is deleted last."""
    old = run_dir.parent / f".{run_dir.name}{_REPLACED}{os.getpid()}"
    os.rename(run_dir, old)
    os.rename(staging, run_dir)
    shutil.rmtree(old, ignore_errors=True)


def discard(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def recover(run_dir: Path) -> None:
    """Undo what a killed writer left beside ``run_dir`` (hold the lock): restore a run moved aside
    mid-swap, delete unfinished staging folders."""
    parent = run_dir.parent
    if not parent.is_dir():
        return
    for p in parent.glob(f".{run_dir.name}{_REPLACED}*"):
        if not run_dir.exists():
            os.rename(p, run_dir)
        else:
            shutil.rmtree(p, ignore_errors=True)
    for p in parent.glob(f".{run_dir.name}{_STAGING}*"):
        shutil.rmtree(p, ignore_errors=True)


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
