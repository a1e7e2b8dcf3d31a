"""The per-run lock: one process writes a run directory at a time."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from pathlib import Path

from ..core.errors import LongtailError
from .files import file_mode


# ------------------------------------------------------------------------------ the run lock
class RunLock:
    """An exclusive lock on one run directory, held by the process that writes the run.

    The lock is ``fcntl.flock`` on ``<output_dir>/.<name>.lock`` (beside the run, so that it
    survives the run directory being swapped); the kernel releases it when the process exits or
    dies. The file holds the holder's pid for the error message, and is removed on release. It is
    keyed on the run's real path (symbolic links and ``..`` resolved), so a run reached by two
    names still has one lock.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        real = Path(os.path.realpath(self.run_dir))
        self.path = real.parent / f".{real.name}.lock"
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
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, file_mode())
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
