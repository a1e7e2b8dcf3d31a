"""A tiny EGTEA Gaze+ look-alike in the exact on-disk format (frame folders + split files).

``python tests/video_fixture.py data/egtea_fixture`` writes it for ``configs/egtea/fixture_cpu.yaml``;
the tests call :func:`write_egtea_fixture` into a temporary folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

VIDEOS = ("OP01-R01-PastaSalad", "OP02-R03-BaconAndEggs", "P03-R05-GreekSalad")
# (train, val, test) clips per verb: a long tail over three verbs
PER_VERB = {1: (8, 2, 2), 2: (4, 2, 2), 3: (2, 2, 2)}
COLOURS = {1: (220, 40, 40), 2: (40, 220, 40), 3: (40, 40, 220)}


def clip_name(video: str, k: int) -> str:
    """EGTEA naming: <video>-<start ms>-<end ms>-F<start frame>-F<end frame>."""
    start = 1000 + 37 * k
    return f"{video}-{start}-{start + 500}-F{start * 24 // 1000:06d}-F{(start + 500) * 24 // 1000:06d}"


def write_clip(folder: Path, num_frames: int, colour: tuple[int, int, int], size: int, rng: np.random.Generator) -> None:
    """Frames 000000.jpg ...: the verb's colour with noise, brightening over time (a motion cue)."""
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(num_frames):
        base = np.asarray(colour, dtype=np.float64) * (0.6 + 0.4 * t / max(num_frames - 1, 1))
        img = np.clip(base + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{t:06d}.jpg", quality=90)


def write_egtea_fixture(root: str | Path, size: int = 20, frames: tuple[int, int] = (3, 9), seed: int = 0,
                        per_verb: dict[int, tuple[int, int, int]] | None = None) -> dict[str, Path]:
    """Clips under ``root/frames/<video>/<clip>/`` and ``{train,val,test}_split.txt`` lines
    ``<clip> <action> <verb> <noun>`` (1-based). Clip lengths vary in ``frames`` (some shorter than
    4 frames); ``per_verb`` gives (train, val, test) clips of verbs 1..3. Returns the paths a config needs."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    lines: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    k = 0
    for verb, counts in (per_verb or PER_VERB).items():
        for split, n in zip(("train", "val", "test"), counts):
            for _ in range(n):
                video = VIDEOS[k % len(VIDEOS)]
                name = clip_name(video, k)
                write_clip(root / "frames" / video / name, int(rng.integers(frames[0], frames[1] + 1)), COLOURS[verb], size, rng)
                noun = int(rng.integers(1, 6))
                action = (verb - 1) * 5 + noun
                lines[split].append(f"{name} {action} {verb} {noun}")
                k += 1
    out = {"root": root / "frames"}
    for split, rows in lines.items():
        out[split] = root / f"{split}_split.txt"
        out[split].write_text("\n".join(rows) + "\n")
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "data/egtea_fixture")
    paths = write_egtea_fixture(target)
    print("wrote", ", ".join(f"{k}: {v}" for k, v in paths.items()))
