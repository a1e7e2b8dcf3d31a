"""Decode a file list once into a uint8 tensor kept on disk between runs.

Small datasets (CIFAR, MedMNIST-size, HAM10000 at low resolution) fit in memory as uint8. Decoding
their JPEGs is the slow part of an epoch, so it happens once: the result is stored as ``.npy``
under ``<cache dir>/tensors/<key>.npy``. The key hashes the file list with each file's content (a
blake2b of its bytes: reading them costs little next to decoding them, and an image rewritten with
the same size and mtime, ``cp -p`` or ``rsync -t``, is not served stale) and the decode settings
(channels, image size, pre-processing, pixel limit), so editing an image or a setting rebuilds it.

``data.cache: mmap`` serves sets that do not fit in RAM: the ``.npy`` is written chunk by chunk
(never the whole decoded set in memory) and opened memory-mapped, so a batch reads only its rows
and the operating system keeps what fits in its page cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ..core.errors import DataError
from .decode import Decoder, open_regular

log = logging.getLogger(__name__)
CACHE_VERSION = 2  # 2: keyed by file content, not size and mtime
MMAP_CHUNK = 1024  # images decoded (and held) at a time while writing a memory-mapped cache


def cache_root(cache_dir: str | None = None) -> Path:
    """``data.cache_dir``, else ``$LONGTAIL_CACHE``, else ``~/.cache/longtail``."""
    if cache_dir:
        return Path(cache_dir)
    env = os.environ.get("LONGTAIL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "longtail"


def workers(threads: int | None = None) -> int:
    """Threads that decode or hash files (PIL and hashlib release the GIL on large buffers)."""
    return threads or min(8, os.cpu_count() or 1)


def file_digest(path: str) -> str:
    """blake2b of a file's bytes; '-' for a file that is missing, unreadable or not a regular file
    (never opened then: decoding reports it), so that it appearing later changes the key too."""
    try:
        with open_regular(path) as f:
            return hashlib.blake2b(f.read(), digest_size=16).hexdigest()  # one read: images are small, and most are tiny
    except (DataError, OSError):
        return "-"


def fingerprint(paths: Sequence[str], decoder: Decoder, on_bad_image: str, threads: int | None = None) -> str:
    """Hash of every file's path and content, and of the decode settings (see the module docstring)."""
    h = hashlib.sha256()
    h.update(f"v{CACHE_VERSION}|{decoder.key}|{on_bad_image}\n".encode())
    with ThreadPoolExecutor(max_workers=workers(threads)) as pool:
        for p, digest in zip(paths, pool.map(file_digest, paths, chunksize=256)):
            h.update(os.fsencode(p) + f"|{digest}\n".encode())  # fsencode: a file name need not be UTF-8
    return h.hexdigest()[:32]


def decode_all(
    paths: Sequence[str], decoder: Decoder, on_bad_image: str = "error", threads: int | None = None
) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    """Decode every file (threads: PIL releases the GIL while decoding). Returns images, kept, skipped."""
    if not paths:
        raise DataError("no image files to decode; check data.source (the folder or list is empty)")

    def one(p: str) -> torch.Tensor | None:
        try:
            return decoder(p)
        except DataError:
            if on_bad_image == "skip":
                return None
            raise

    with ThreadPoolExecutor(max_workers=workers(threads)) as pool:
        decoded = list(pool.map(one, paths, chunksize=256))
    kept = np.array([i for i, img in enumerate(decoded) if img is not None], dtype=np.int64)
    skipped = [paths[i] for i, img in enumerate(decoded) if img is None]
    if len(kept) == 0:
        raise DataError(f"none of the {len(paths)} images could be decoded (first: '{paths[0]}'); check the files")
    shapes = {tuple(decoded[i].shape) for i in kept}
    if len(shapes) > 1:
        raise DataError(f"images have different sizes {sorted(shapes)[:2]}; set data.image_size so every image is resized")
    images = torch.stack([decoded[i] for i in kept])
    return images, kept, skipped


def cached_decode(
    paths: Sequence[str], decoder: Decoder, cache_dir: str | None = None, on_bad_image: str = "error", mmap: bool = False
) -> tuple[torch.Tensor, np.ndarray, list[str], bool]:
    """Images of ``paths`` from the cache, decoding and storing them on a miss.

    Returns (uint8 N x C x H x W, indices of the decoded files, skipped files, whether it was a hit).
    With ``mmap`` the tensor is a memory-mapped view of the cache file (the same file either way).
    """
    root = cache_root(cache_dir) / "tensors"
    key = fingerprint(paths, decoder, on_bad_image)
    arr_path, meta_path = root / f"{key}.npy", root / f"{key}.json"
    if arr_path.is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            images = _open(arr_path, int(meta.get("n_images", len(meta["kept"]))), mmap)
            return images, np.asarray(meta["kept"], dtype=np.int64), list(meta["skipped"]), True
        except (OSError, ValueError, KeyError) as e:  # a torn or foreign file: rebuild it
            log.warning("tensor cache %s unreadable (%s); rebuilding", arr_path, e)
    if mmap:
        kept, skipped = _decode_to_file(paths, decoder, on_bad_image, root, key)
        return _open(arr_path, len(kept), mmap=True), kept, skipped, False
    images, kept, skipped = decode_all(paths, decoder, on_bad_image)
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".{key}.{os.getpid()}.npy"
        np.save(tmp, images.numpy())
        meta_tmp = root / f".{key}.{os.getpid()}.json"
        meta_tmp.write_text(json.dumps({"kept": kept.tolist(), "skipped": skipped, "n_files": len(paths)}))
        os.replace(tmp, arr_path)
        os.replace(meta_tmp, meta_path)
    except OSError as e:  # a read-only cache only costs speed
        log.warning("could not write the tensor cache in %s (%s); set data.cache_dir or LONGTAIL_CACHE", root, e)
    return images, kept, skipped, False


def _open(arr_path: Path, n_images: int, mmap: bool) -> torch.Tensor:
    """The cached images: loaded into memory, or memory-mapped copy-on-write (pages are read on use and
    shared with the page cache; torch needs a writable array, and nothing writes to it)."""
    array = np.load(arr_path, mmap_mode="c" if mmap else None)
    return torch.from_numpy(array[:n_images])


def _decode_to_file(paths: Sequence[str], decoder: Decoder, on_bad_image: str, root: Path, key: str) -> tuple[np.ndarray, list[str]]:
    """Decode ``paths`` chunk by chunk straight into ``<root>/<key>.npy`` (at most ``MMAP_CHUNK`` decoded
    images in memory); skipped files leave unused rows at the end, the meta file says how many are valid."""
    if not paths:
        raise DataError("no image files to decode; check data.source (the folder or list is empty)")
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{key}.{os.getpid()}.npy"
    out: np.ndarray | None = None
    kept: list[int] = []
    skipped: list[str] = []
    try:
        for start in range(0, len(paths), MMAP_CHUNK):
            chunk = list(paths[start : start + MMAP_CHUNK])
            try:
                images, chunk_kept, chunk_skipped = decode_all(chunk, decoder, on_bad_image)
            except DataError:
                if on_bad_image != "skip":
                    raise
                skipped += chunk  # none of this chunk decoded
                continue
            if out is None:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), *images.shape[1:]))
            elif tuple(out.shape[1:]) != tuple(images.shape[1:]):
                raise DataError(f"images have different sizes {tuple(out.shape[1:])} and {tuple(images.shape[1:])}; set data.image_size so every image is resized")
            out[len(kept) : len(kept) + len(images)] = images.numpy()
            kept += [start + int(i) for i in chunk_kept]
            skipped += chunk_skipped
        if out is None:
            raise DataError(f"none of the {len(paths)} images could be decoded (first: '{paths[0]}'); check the files")
        out.flush()
        del out
        meta_tmp = root / f".{key}.{os.getpid()}.json"
        meta_tmp.write_text(json.dumps({"kept": kept, "skipped": skipped, "n_files": len(paths), "n_images": len(kept)}))
        os.replace(tmp, root / f"{key}.npy")
        os.replace(meta_tmp, root / f"{key}.json")
    finally:
        tmp.unlink(missing_ok=True)
    return np.asarray(kept, dtype=np.int64), skipped
