"""Where a command may write: never over a file a run directory owns, unless writing it is that command's job.

Every command that takes an output path (``predict --out``, ``export --out``, ``compare --out``,
``data describe / convert``) checks it here before any work, so a typo cannot turn a run's best
checkpoint into a CSV. The path is resolved first (symbolic links and ``..``), so neither can
dodge the check; its last part is kept as typed, since the atomic writer replaces a link there
instead of following it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..core.errors import LongtailError
from .layout import (
    BEST,
    CONFIG,
    DATA_META,
    ENVIRONMENT,
    EXPORTED,
    LAST,
    MARKER,
    METADATA_ENCODING,
    METRICS,
    PACES,
    POSTHOC,
    PREDICTIONS,
    REPORT,
    REPORT_FILES,
    REPORT_HTML,
    REPORT_MD,
    RESULTS,
    RESUMES,
    SPBL,
    SPLITS,
    TENSORBOARD,
    TRACKING,
    TRUST,
    CARD,
)
from .staging import is_run

#: what a run directory owns (run-relative file or folder) and what the messages call it; a folder owns everything in it
OWNED = {
    MARKER: "its marker", CONFIG: "its config", ENVIRONMENT: "its environment record", SPLITS: "its split indices",
    METRICS: "its training log", RESULTS: "its results", POSTHOC: "its post-hoc strengths", DATA_META: "its data description",
    METADATA_ENCODING: "its metadata encoding",
    RESUMES: "its resume log", "checkpoints": "its checkpoints", LAST: "its last checkpoint", BEST: "its best checkpoint",
    PREDICTIONS: "its saved predictions", PACES: "its SPBL paces", SPBL: "its SPBL classifier", TENSORBOARD: "its TensorBoard log",
    REPORT_HTML: "its report", REPORT_MD: "its Markdown report", REPORT_FILES: "its report's figures",
    TRUST: "its trust fit", TRACKING: "its MLflow record", CARD: "its model card",
    **{name: "its exported model" if not name.endswith(".json") else "its exported model's sidecar" for name in EXPORTED},
}

#: the owned entries that are folders
OWNED_FOLDERS = ("checkpoints", PREDICTIONS, PACES, SPBL, TENSORBOARD, REPORT_FILES)

#: the owned names that one command writes as its job (command -> names); no other command may
JOBS = {"report": REPORT, "export": EXPORTED, "card": (CARD,)}


def check_output(path: str | Path, command: str, example: str, label: str = "output") -> Path:
    """``path``, or a one-line error when ``command`` may not write it: an existing folder, a file in
    the way, or a file a run owns that is not ``command``'s job (:data:`OWNED`, :data:`JOBS`).

    ``example`` is the command's usual file name; the error suggests a place for it that passes this check."""
    path = Path(path)
    check_not_folder(path, command, example, label)
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise LongtailError(f"{label} '{path}' cannot be written: '{blocker}' is a file, not a folder; pass a path in a folder")
    _refuse_owned(path, _resolved(path), command, example, label)
    return path


def check_output_folder(folder: str | Path, command: str, example: str) -> Path:
    """``folder``, or a one-line error when ``command`` may not write files into it: a file is in the way, or a run owns it.

    ``example`` names a folder to suggest instead (beside the run)."""
    folder = Path(folder)
    blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise LongtailError(f"output folder '{folder}' cannot be used: '{blocker}' is a file, not a folder; pass a folder")
    _refuse_owned(folder, Path(os.path.realpath(folder)), command, example, "output folder")  # files go inside it: resolved whole
    return folder


def _refuse_owned(path: Path, real: Path, command: str, example: str, label: str) -> None:
    """The one-line error when a run owns ``path`` (resolved: ``real``) and writing it is not ``command``'s job, naming a place that is."""
    refused = _refusal(real, command)
    if refused is None:
        return
    run, key, exact = refused
    typed = _as_typed(path, run)
    job = next((f", which only `longtail {c}` writes" for c, names in JOBS.items() if key in names), "")
    kind = "a folder" if key in OWNED_FOLDERS else "a file"
    where = f"{kind} the run '{typed}' owns ({OWNED[key]}{job})" if exact else f"inside '{key}/', a folder the run '{typed}' owns ({OWNED[key]}{job})"
    safe = _suggest([typed / example, run.with_name(f"{run.name}-{example}")], command)
    raise LongtailError(f"{label} '{path}' is {where}; write elsewhere, e.g. '{safe}'")


def check_not_folder(path: Path, command: str, example: str, label: str = "output") -> None:
    """Refuse an output path that is an existing folder, suggesting a file for ``command`` in it (or, when that is not safe, beside its run)."""
    if not path.is_dir():
        return
    real = Path(os.path.realpath(path))
    run = next((p for p in (real, *real.parents) if is_run(p)), None)
    beside = [_as_typed(path, run) / example, run.with_name(f"{run.name}-{example}")] if run is not None else []
    raise LongtailError(f"{label} '{path}' is a folder; pass a file path, e.g. '{_suggest([path / example, *beside], command)}'")


def _refusal(real: Path, command: str) -> tuple[Path, str, bool] | None:
    """(the run's real path, the owned name, whether ``real`` is that very name) when a run owns the resolved path ``real``
    and writing it is not ``command``'s job."""
    for run in _runs_above(real):
        rel = real.relative_to(run).as_posix()
        key = _owned_key(rel)
        if key is not None and key not in JOBS.get(command, ()):
            return run, key, rel == key
    return None


def _resolved(path: Path) -> Path:
    """``path`` with its folder's links and ``..`` resolved; the last part as typed (the writer replaces a link there)."""
    if path.name in ("", ".", ".."):
        return Path(os.path.realpath(path))
    return Path(os.path.realpath(path.parent)) / path.name


def _runs_above(real: Path) -> list[Path]:
    """Every run directory that holds ``real`` (an SPBL pace is a run inside a run)."""
    return [p for p in real.parents if is_run(p)]


def _owned_key(rel: str) -> str | None:
    """The :data:`OWNED` entry that covers the run-relative path ``rel`` (the file itself or a folder above it)."""
    if rel in OWNED:
        return rel
    first = rel.split("/", 1)[0]
    return first if first in OWNED else None


def _as_typed(path: Path, real_run: Path) -> Path:
    """The run as the user named it (``path`` or a folder above it, without ``..``, that resolves to ``real_run``), else its real path."""
    return next((p for p in (path, *path.parents) if ".." not in p.parts and Path(os.path.realpath(p)) == real_run), real_run)


def _suggest(candidates: list[Path], command: str) -> Path:
    """The first candidate that ``command`` may write (no folder, not a run's own file), else the first one's name in the home folder."""
    for candidate in candidates:
        if not candidate.is_dir() and _refusal(_resolved(candidate), command) is None:
            return candidate
    return Path.home() / candidates[0].name
