"""SIGTERM at random points of `report`, `predict` and `export` (issue #31).

Each command runs as its own process (``python -m longtail``) on a copy of a finished run that
already holds the command's earlier output (a report, a predictions CSV, an export), and is killed
with SIGTERM after a random delay (seeded; spread over the command's own duration, measured once).
Every file that was there before must then be byte-identical or completely replaced, never half
written. The three commands run side by side, so the whole file costs about three command runs.
"""

from __future__ import annotations

import csv
import io
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from .common import ENV, digests, image_folder

KILLS = 3  # per command: process start-up dominates, keep it small
IMAGES = 4

COMMANDS: dict[str, Callable[[Path, Path], list[object]]] = {  # the earlier output each one writes over
    "report": lambda run, imgs: ["report", run],
    "predict": lambda run, imgs: ["predict", run, imgs, "--out", run / "predictions.csv"],
    "export": lambda run, imgs: ["export", run, "--format", "torchscript"],
}


def _start(command: str, run: Path, imgs: Path) -> subprocess.Popen:
    args = [str(a) for a in COMMANDS[command](run, imgs)]
    return subprocess.Popen([sys.executable, "-m", "longtail", *args], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _whole(path: Path) -> bool:
    """Whether ``path`` is a complete output of its kind (the HTML closed, the PNG ended, every CSV row, a loadable model)."""
    data = path.read_bytes()
    try:
        if path.suffix == ".html":
            return data.rstrip().endswith(b"</html>")
        if path.suffix == ".png":
            return data.endswith(b"IEND\xaeB`\x82")
        if path.suffix == ".csv":
            rows = list(csv.reader(io.StringIO(data.decode())))
            return rows[0][0] == "image" and len(rows) == 1 + IMAGES and all(len(r) == len(rows[0]) for r in rows)
        if path.suffix == ".json":
            return isinstance(json.loads(data), dict)
        if path.name == "model.pt":
            torch.jit.load(io.BytesIO(data))
            return True
    except Exception:  # noqa: BLE001 - anything unreadable is half a file
        return False
    return False


def _run_all(runs: dict[str, Path], imgs: Path, delays: dict[str, float] | None) -> dict[str, tuple[int, float]]:
    """Start every command at once; SIGTERM each after its delay (None: let it finish). (exit status, seconds) per command."""
    started = time.monotonic()
    procs = {c: _start(c, run, imgs) for c, run in runs.items()}
    ended: dict[str, tuple[int, float]] = {}
    while len(ended) < len(procs):
        now = time.monotonic() - started
        for c, p in procs.items():
            if c in ended:
                continue
            if p.poll() is not None:
                ended[c] = (p.returncode, now)
            elif delays is not None and now >= delays[c]:
                p.send_signal(signal.SIGTERM)
                ended[c] = (p.wait(timeout=60), now)
        time.sleep(0.005)
    return ended


def test_sigterm_at_random_points_leaves_every_file_whole_or_replaced(finished, tmp_path):
    imgs = image_folder(tmp_path / "imgs", per_class=IMAGES // 2)
    runs = {c: Path(shutil.copytree(finished, tmp_path / c / "done")) for c in COMMANDS}  # one place each: the report names it
    ran = _run_all(runs, imgs, None)  # the earlier outputs, and how long each command takes
    assert all(code == 0 for code, _ in ran.values()), ran
    earlier = {c: Path(shutil.copytree(run, tmp_path / "earlier" / c)) for c, run in runs.items()}
    before = {c: digests(run) for c, run in runs.items()}
    rng = random.Random(31)
    interrupted = dict.fromkeys(COMMANDS, 0)
    for k in range(KILLS):  # round k kills each command in the k-th slice of [0.3, 1.05] x its duration (start-up comes first)
        delays = {c: ran[c][1] * (0.3 + 0.75 * (k + rng.random()) / KILLS) for c in COMMANDS}
        for c, run in runs.items():
            shutil.rmtree(run)
            shutil.copytree(earlier[c], run)
        for c, (code, _) in _run_all(runs, imgs, delays).items():
            assert code in (0, -signal.SIGTERM), (c, code)
            interrupted[c] += code == -signal.SIGTERM
            after = digests(runs[c])
            for rel, digest in before[c].items():
                assert rel in after, f"{c} killed after {delays[c]:.2f}s removed {rel}"
                assert after[rel] == digest or _whole(runs[c] / rel), f"{c} killed after {delays[c]:.2f}s left half of {rel}"
            strays = [rel for rel in set(after) - set(before[c]) if not (Path(rel).name.startswith(".") and ".tmp" in Path(rel).name)]
            assert not strays, f"{c} killed after {delays[c]:.2f}s left {strays}"
    assert all(interrupted.values()), f"every command was stopped at least once mid-run: {interrupted}"
