"""A run directory's life: creating it, finding a free name, ``--overwrite`` building beside the old run and swapping, recovering a swap that was killed, and removing temp files a kill left."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..core.errors import LongtailError
from ..core.wording import option
from .files import write_error, write_json
from .layout import CONFIG, LAST, MARKER, PACES, PREDICTIONS, REPLACED_PREFIX, STAGING_PREFIX, WRITTEN


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
    return name.endswith(".tmp.npz") or any(name.startswith(f".{Path(rel).name}.") for rel in WRITTEN)


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
    path = run_dir.parent / f".{run_dir.name}{STAGING_PREFIX}{os.getpid()}"
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
    old = run_dir.parent / f".{run_dir.name}{REPLACED_PREFIX}{os.getpid()}"
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
    for p in parent.glob(f".{run_dir.name}{REPLACED_PREFIX}*"):
        if not run_dir.exists():
            os.rename(p, run_dir)
        else:
            shutil.rmtree(p, ignore_errors=True)
    for p in parent.glob(f".{run_dir.name}{STAGING_PREFIX}*"):
        shutil.rmtree(p, ignore_errors=True)
