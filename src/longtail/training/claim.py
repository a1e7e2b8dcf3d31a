"""Claiming the folder of a new run: never a silent clash with a run already there.

Two processes starting the same name each get their own folder, because the name is decided
under the folder's lock and after a half-done swap has been undone.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .. import rundir
from ..core.errors import LongtailError
from ..core.wording import option

log = logging.getLogger("longtail")


def claim_run_dir(run_dir: Path, overwrite: bool) -> tuple[Path, rundir.RunLock]:
    """The folder a new run writes to, locked: ``run_dir``, or when it is taken and ``overwrite`` was
    not asked, the next free ``<name>-2``, ``<name>-3``, ... (said in one line, never a silent clash)."""
    lock = rundir.RunLock(run_dir)
    lock.acquire()
    if overwrite:
        return run_dir, lock
    try:
        rundir.recover(run_dir)  # a swap killed half-way is undone before deciding the name is taken
        is_taken = rundir.taken(run_dir)
    except BaseException:
        lock.release()
        raise
    if not is_taken:
        return run_dir, lock
    lock.release()
    start = 2
    for attempt in range(100):
        candidate = rundir.next_free(run_dir, start)
        start = int(candidate.name.rsplit("-", 1)[1]) + 1
        lock = rundir.RunLock(candidate)
        try:
            lock.acquire()
        except LongtailError:  # another process is starting that name: take the next
            if attempt == 99:
                raise
            continue
        try:
            rundir.recover(candidate)
            if not rundir.taken(candidate):
                break
        except BaseException:
            lock.release()
            raise
        lock.release()
    log.warning("run directory '%s' is taken; this run is '%s' (pass %s to replace it, or %s to continue it)",
                run_dir, candidate, option("overwrite"), option("resume", run_dir))
    return candidate, lock
