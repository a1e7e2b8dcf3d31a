"""``longtail data extract-frames``: video files -> the frame-folder layout clip sources read.

Every video file under ``VIDEO_DIR`` becomes ``OUT_DIR/<video>/<clip>/000000.jpg, 000001.jpg, ...``
with ``<clip>`` the file's name without extension and ``<video>`` its first three dash-separated
tokens (EGTEA: ``OP01-R01-PastaSalad-1002316-1004005-F024051-F024101.mp4`` goes to
``OP01-R01-PastaSalad/OP01-R01-PastaSalad-1002316-.../``); a name with fewer tokens is its own
video folder (``clip/clip/``), which is where the ``egtea`` source looks for it. Decoding uses PyAV (FFmpeg bindings; the ``video`` extra). A clip is written to a
temporary folder and renamed when complete, so an interrupted run never leaves a short clip behind
and a rerun skips finished clips.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import DataError, LongtailError
from .sources.egtea import video_of

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")


def require_av() -> Any:
    """The PyAV module, or a one-line error naming the extra that installs it."""
    try:
        import av
    except ImportError:
        raise LongtailError("extract-frames needs PyAV to read videos; install it with pip install 'longtail[video]'") from None
    return av


def clip_target(video: Path) -> tuple[str, str]:
    """(video folder, clip folder) names for a video file: the rule the ``egtea`` source reads back."""
    return video_of(video.stem), video.stem


@dataclass
class ExtractSummary:
    clips: int
    frames: int
    skipped_existing: int


def extract_video(path: Path, out: Path, every: int = 1, short_side: int | None = None, quality: int = 95) -> int:
    """Write every ``every``-th frame of ``path`` as ``out/000000.jpg ...``; returns the frame count."""
    av = require_av()
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    written = 0
    try:
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i % every:
                    continue
                img = frame.to_image()
                if short_side is not None:
                    w, h = img.size
                    scale = short_side / min(w, h)
                    img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))))
                img.save(tmp / f"{written:06d}.jpg", quality=quality)
                written += 1
    except (av.error.FFmpegError, OSError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"video '{path}' cannot be decoded ({type(e).__name__}: {e}); replace the file") from None
    if written == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"video '{path}' has no video frames; replace the file")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return written


def extract_frames(video_dir: str | Path, out_dir: str | Path, every: int = 1, short_side: int | None = None,
                   quality: int = 95, overwrite: bool = False) -> ExtractSummary:
    """Every video under ``video_dir`` (recursive) into ``out_dir/<video>/<clip>/``."""
    require_av()
    src, dst = Path(video_dir), Path(out_dir)
    if not src.is_dir():
        raise DataError(f"video folder '{src}' not found or not a folder")
    if every < 1:
        raise DataError(f"--every must be >= 1, got {every}")
    videos = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    if not videos:
        raise DataError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) under '{src}'")
    seen: dict[str, Path] = {}
    for path in videos:
        if path.stem in seen:
            raise DataError(f"two videos are named '{path.stem}' ('{seen[path.stem]}', '{path}'); clip names must be unique")
        seen[path.stem] = path
    clips = frames = existing = 0
    for path in videos:
        video, clip = clip_target(path)
        target = dst / video / clip
        if target.is_dir() and not overwrite:
            existing += 1
            continue
        frames += extract_video(path, target, every, short_side, quality)
        clips += 1
    return ExtractSummary(clips, frames, existing)
