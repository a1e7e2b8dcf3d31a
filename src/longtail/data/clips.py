"""Video clips stored as frame folders: segment sampling and the ``ClipDataset``.

A clip is a folder of numbered frames (``000000.jpg, 000001.jpg, ...``). An item of a clip split is
a uint8 **C x T x H x W** tensor of ``T`` frames picked by segment sampling (TSN style): the clip's
``n`` frames are cut into ``T`` equal segments; training takes a random frame of each segment,
evaluation the middle one. Indices are integers (the CDB original built float file names such as
``0005.0.jpg`` at evaluation), and a clip shorter than ``T`` frames repeats frames instead of failing.

Frames are decoded on access with the image :class:`~longtail.data.decode.Decoder`, so a frame gets
exactly the channel conversion, ``data.preprocess`` and ``data.image_size`` an image would. Clips
are never put in the tensor cache (an epoch samples other frames each time).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..core.errors import ConfigError, DataError
from .dataset import ImageDataset
from .decode import DEFAULT_MAX_PIXELS, header_ok

FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")


def segment_indices(num_frames: int, segments: int, random: bool, generator: torch.Generator | None = None) -> np.ndarray:
    """``segments`` integer frame indices of a clip of ``num_frames`` frames, one per equal segment.

    Segment ``k`` covers ``[k n / T, (k + 1) n / T)``; ``random`` picks a uniform position in it
    (training), else its middle (evaluation). With ``n < T`` segments are shorter than a frame, so
    neighbouring segments share frames: a short clip repeats frames in order.
    """
    if num_frames < 1:
        raise DataError("a clip needs at least one frame")
    if segments < 1:
        raise ConfigError(f"frames per clip must be >= 1, got {segments}")
    length = num_frames / segments
    start = np.arange(segments, dtype=np.float64) * length
    if random:
        offset = torch.rand(segments, generator=generator, dtype=torch.float64).numpy() * length
    else:
        offset = np.full(segments, length / 2.0)
    return np.minimum(np.floor(start + offset), num_frames - 1).astype(np.int64)


def frame_number(name: str) -> int | None:
    """The integer frame index of a file name such as ``000012.jpg`` (None for other files)."""
    stem, ext = os.path.splitext(name)
    if ext.lower() not in FRAME_EXTENSIONS or not stem.isdigit():
        return None
    return int(stem)


def scan_clip(folder: str) -> tuple[list[str] | None, str | None]:
    """(frame paths in order, None) for a complete clip folder, or (None, why it is unusable).

    Frames must be numbered 0..n-1 without a gap: a gap is a missing frame.
    """
    try:
        names = os.listdir(folder)
    except OSError:
        return None, f"clip folder '{folder}' not found"
    numbered = sorted((n, name) for name in names if (n := frame_number(name)) is not None)
    if not numbered:
        return None, f"clip folder '{folder}' has no frames (expected 000000.jpg, 000001.jpg, ...)"
    for expected, (n, name) in enumerate(numbered):
        if n != expected:
            what = f"has two files for frame {n}" if n < expected else f"is missing frame {expected} (found {name} next)"
            return None, f"clip folder '{folder}' {what}"
    return [os.path.join(folder, name) for _, name in numbered], None


def frames_readable(paths: Sequence[str], max_pixels: int | None = DEFAULT_MAX_PIXELS) -> bool:
    """Whether every frame's image header opens (the ``on_bad_image=skip`` pre-check, as for images)."""
    return all(header_ok(p, max_pixels) for p in paths)


class ClipDataset(ImageDataset):
    """A split of clips: item ``i`` is a uint8 C x T x H x W tensor and its target.

    ``random_frames`` selects training sampling (a random frame per segment); ``build_data`` sets
    it on the train split only. ``decoder`` turns one frame file into a uint8 C x H x W tensor.
    """

    storage = "stream"  # frames are decoded on access, never cached

    def __init__(
        self,
        frames: Sequence[Sequence[str]],
        targets: Sequence[int] | np.ndarray,
        class_names: Sequence[str],
        decoder: Callable[[str], torch.Tensor],
        frames_per_clip: int,
        ids: Sequence[str] | None = None,
        groups: Sequence[Any] | np.ndarray | None = None,
        random_frames: bool = False,
        problems: Sequence[str | None] | None = None,
    ) -> None:
        if frames_per_clip < 1:
            raise ConfigError(f"data.source.frames_per_clip must be >= 1, got {frames_per_clip}")
        self.frames = [list(f) for f in frames]
        self.targets = np.asarray(targets, dtype=np.int64).reshape(-1)
        if len(self.targets) != len(self.frames):
            raise ValueError(f"{len(self.targets)} targets for {len(self.frames)} clips")
        self.ids = [str(i) for i in ids] if ids is not None else [os.path.dirname(f[0]) for f in self.frames]
        self.groups = None if groups is None else np.asarray(groups)
        self.class_names = [str(c) for c in class_names]
        self.decoder = decoder
        self.frames_per_clip = int(frames_per_clip)
        self.random_frames = bool(random_frames)
        self.problems = list(problems) if problems is not None else [None] * len(self.frames)
        self._sample_transform: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def sample_transform(self) -> Callable[[torch.Tensor], torch.Tensor] | None:  # type: ignore[override]
        return self._sample_transform

    @sample_transform.setter
    def sample_transform(self, op: Callable[[torch.Tensor], torch.Tensor] | None) -> None:
        # a per-image op would draw new parameters for every frame; clip transforms must be batched
        if op is not None:
            raise ConfigError(
                f"per-sample transform {op!r} cannot run on clips (it would change every frame differently); "
                "use batched transforms in data.train_transforms (random_crop, random_rotation, hflip, resize, color_jitter)"
            )

    def indices(self, i: int) -> np.ndarray:
        """The frame indices item ``i`` reads now (random in training mode)."""
        return segment_indices(len(self.frames[i]), self.frames_per_clip, self.random_frames)

    def load(self, i: int) -> torch.Tensor:
        paths = self.frames[i]
        try:
            frames = [self.decoder(paths[j]) for j in self.indices(i)]
        except DataError as e:
            raise DataError(f"clip '{self.ids[i]}': {e}") from None
        return torch.stack(frames, dim=1)

    def subset(self, indices: Sequence[int] | np.ndarray) -> "ClipDataset":
        idx, meta = self._select(indices)
        return ClipDataset([self.frames[i] for i in idx], decoder=self.decoder, frames_per_clip=self.frames_per_clip,
                           random_frames=self.random_frames, problems=[self.problems[i] for i in idx], **meta)

    def with_decoder(self, decoder: Callable[[str], torch.Tensor]) -> "ClipDataset":
        """The same clips with frames decoded another way (image size, channels, pre-processing)."""
        return ClipDataset(self.frames, self.targets, self.class_names, decoder, self.frames_per_clip,
                           self.ids, self.groups, self.random_frames, self.problems)

    def checked(self, on_bad_image: str) -> tuple["ClipDataset", list[str]]:
        """Apply ``data.on_bad_image`` to the clips: ``error`` fails on the first incomplete clip folder
        (missing folder, no frames, a gap in the numbering); ``skip`` drops those and clips with a
        frame whose header does not open, as the lazy image path does. Returns (kept, skipped ids)."""
        bad = [i for i, p in enumerate(self.problems) if p is not None]
        if on_bad_image != "skip":
            if bad:
                raise DataError(f"{self.problems[bad[0]]}; re-extract the clip (longtail data extract-frames) or set data.on_bad_image=skip")
            return self, []
        limit = getattr(self.decoder, "max_image_pixels", DEFAULT_MAX_PIXELS)
        ok = np.array([p is None and frames_readable(f, limit) for p, f in zip(self.problems, self.frames)], dtype=bool)
        return self.subset(np.flatnonzero(ok)), [self.ids[i] for i in np.flatnonzero(~ok)]

    @property
    def channels(self) -> int:
        return int(getattr(self.decoder, "channels", None) or self.load(0).shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        size = getattr(self.decoder, "image_size", None)
        if size:
            return tuple(size)  # type: ignore[return-value]
        clip = self.load(0)
        return int(clip.shape[2]), int(clip.shape[3])

    def __repr__(self) -> str:
        return f"ClipDataset(n={len(self)}, classes={len(self.class_names)}, frames={self.frames_per_clip})"


def scan_clips(folders: Sequence[str]) -> tuple[list[list[str]], list[str | None]]:
    """Frame lists of clip folders and, per clip, why it is unusable (None when it is complete)."""
    frames, problems = [], []
    for folder in folders:
        paths, problem = scan_clip(folder)
        frames.append(paths or [])
        problems.append(problem)
    return frames, problems


def find_clip_folders(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Clip folders (folders holding numbered frames) given as such or found under the given folders."""
    found: list[str] = []
    for p in map(str, paths):
        if not os.path.isdir(p):
            raise DataError(f"'{p}' is not a folder; a clip is a folder of frames 000000.jpg, 000001.jpg, ...")
        for dirpath, dirnames, filenames in os.walk(p):
            dirnames.sort()
            if any(frame_number(f) is not None for f in filenames):
                found.append(dirpath)
    if not found:
        raise DataError(f"no clip folders (folders of frames 000000.jpg, ...) under {', '.join(map(str, paths))}")
    return found


def clips_for_prediction(folders: Sequence[str], decoder: Callable[[str], torch.Tensor], frames_per_clip: int) -> ClipDataset:
    """Unlabelled clips read exactly as evaluation reads them (segment middles); a bad folder is an error."""
    frames, problems = scan_clips(folders)
    ds = ClipDataset(frames, [-1] * len(folders), [], decoder, frames_per_clip, ids=list(folders), problems=problems)
    return ds.checked("error")[0]
