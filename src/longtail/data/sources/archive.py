"""Extract a dataset tarball once into the cache directory and reuse the folder afterwards."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from pathlib import Path

from ...core.errors import DataError
from ..cache import cache_root


def is_tarball(path: Path) -> bool:
    return path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar"))


def ensure_extracted(archive: str | Path, cache_dir: str | None = None) -> Path:
    """The folder holding the extracted ``archive`` (extracting it on first use, atomically)."""
    path = Path(archive)
    st = path.stat()
    tag = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]
    stem = path.name.split(".")[0]
    target = cache_root(cache_dir) / "extracted" / f"{stem}-{tag}"
    if (target / ".complete").is_file():
        return target
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with tarfile.open(path) as tar:
            tar.extractall(tmp, filter="data")
    except (tarfile.TarError, OSError, EOFError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"cannot extract '{path}' ({type(e).__name__}: {e}); the archive is damaged, download it again") from None
    (tmp / ".complete").write_text(str(path.resolve()))
    if target.exists():  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, target)
    return target
