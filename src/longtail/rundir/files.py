"""Writing a run's files so that a kill never leaves a half-written one: atomic writes, JSON / JSON lines, saved predictions."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from ..core.errors import LongtailError
from ..core.wording import option
from .layout import LAST, METRICS, PREDICTIONS, STAGING_PREFIX


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


def check_inside(path: Path, root: Path) -> None:
    """Refuse ``path`` when its folder leads outside ``root`` (a symbolic link to elsewhere), so a run's writes into itself stay in it."""
    folder, top = os.path.realpath(path.parent), os.path.realpath(root)
    if os.path.commonpath([folder, top]) != top:
        raise LongtailError(f"'{path.parent}' leads outside '{root}' (to '{folder}', through a symbolic link); "
                            "replace the link with a real folder and run again")


def atomic_write(path: Path, write: Callable[[BinaryIO], None], within: Path | None = None) -> None:
    """Write via a temp file + rename, so readers see the old or the new file, never half of one.

    ``write`` fills the open temp file; the file gets the user's umask (not mkstemp's 0600). The temp
    file is new (mkstemp: O_EXCL, a random name ending in ``.tmp<suffix>``), so a planted file or link
    of a guessable name is never written through; the rename replaces a link at ``path`` itself, never
    the file it points to. With ``within``, a folder that leads outside it is refused (:func:`check_inside`)."""
    path = Path(path)
    if within is not None:
        check_inside(path, within)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
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


def atomic_write_bytes(path: Path, data: bytes, within: Path | None = None) -> None:
    """``data`` into ``path`` atomically."""
    atomic_write(path, lambda f: f.write(data), within)


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]], within: Path | None = None) -> Path:
    """A CSV (``header``, then ``rows``) written atomically, as ``csv.writer`` formats it; returns ``path``."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_bytes(Path(path), text.getvalue().encode(), within)
    return Path(path)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Save so that a crash mid-write never leaves a truncated checkpoint behind."""
    atomic_write(path, lambda f: torch.save(obj, f))


def write_json(path: Path, obj: Any, within: Path | None = None) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, default=_json_default).encode(), within)


def damaged(path: Path, problem: str, fix: str = "restore the file") -> LongtailError:
    """A run file that is not what longtail wrote, as one line: the run directory is damaged.

    A file of a staging copy (a finished run extended on a copy) is named in the run itself, where the user can fix it."""
    parts = [p[1 : p.index(STAGING_PREFIX)] if p.startswith(".") and STAGING_PREFIX in p else p for p in Path(path).parts]
    return LongtailError(f"'{Path(*parts)}' {problem}; the run directory is damaged: {fix} or retrain with {option('overwrite')}")


def read_json(path: Path, keys: Sequence[str] = ()) -> dict[str, Any]:
    """A JSON object longtail wrote (with every one of ``keys``); a missing, unreadable or damaged file is one line."""
    path = Path(path)
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise damaged(path, "is missing") from None
    except json.JSONDecodeError as e:
        raise damaged(path, f"is not valid JSON (line {e.lineno})") from None
    except UnicodeDecodeError:
        raise damaged(path, "is not valid JSON (not UTF-8 text)") from None
    except OSError as e:
        raise LongtailError(f"cannot read '{path}' ({e.strerror}); make it readable and run again") from None
    if not isinstance(data, dict):
        raise damaged(path, f"holds a JSON {type(data).__name__}, not the object longtail writes")
    missing = [k for k in keys if k not in data]
    if missing:
        raise damaged(path, f"has no {', '.join(map(repr, missing))} entry")
    return data


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
    """The records of a JSON-lines file; an unreadable last line (an append a kill cut short) is left out,
    an unreadable line before it is a one-line error naming it."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = [(n, line) for n, line in enumerate(path.read_bytes().decode(errors="replace").splitlines(), 1) if line.strip()]
    records = []
    for k, (n, line) in enumerate(lines):
        record = _json_object(line)
        if record is not None:
            records.append(record)
        elif k < len(lines) - 1:
            raise damaged(path, f"line {n} is not a JSON object", "restore the file, delete that line")
    return records


def _json_object(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def save_predictions(run_dir: Path, split: str, logits: np.ndarray, targets: np.ndarray, ids: list[str], features: np.ndarray | None,
                     bootstrap_groups: np.ndarray | None = None, posthoc_logits: np.ndarray | None = None) -> Path:
    """``predictions/<split>.npz``. ``bootstrap_groups`` (what a bootstrap resample draws for each image, e.g. its
    lesion: ``eval.bootstrap.groups``) lets intervals and paired comparisons resample without the data; ``posthoc_logits`` are the logits after the run's
    post-hoc correction, what its ``*_posthoc`` metrics score, so a comparison needs no model."""
    path = run_dir / PREDICTIONS / f"{split}.npz"
    arrays = {"logits": logits.astype(np.float32), "targets": targets.astype(np.int64), "ids": np.asarray(ids, dtype=str)}
    if features is not None:
        arrays["features"] = features.astype(np.float32)
    if bootstrap_groups is not None:
        arrays["bootstrap_groups"] = np.asarray(bootstrap_groups).astype(str)
    if posthoc_logits is not None:
        arrays["posthoc_logits"] = np.asarray(posthoc_logits, dtype=np.float32)
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))
    return path


def load_predictions(run_dir: Path, split: str) -> dict[str, np.ndarray]:
    path = Path(run_dir) / PREDICTIONS / f"{split}.npz"
    if not path.is_file():
        raise LongtailError(f"no saved {split} predictions in '{run_dir}'; run `longtail eval {run_dir} --split {split}` first")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
