"""Wall time of the README's first command: the install (optional) and the quickstart training run.

    python benchmarks/quickstart_time.py [--repeats 3] [--install] [--no-docs]

Runs ``longtail train -c configs/quickstart.yaml`` (the console script of the active environment, from
the repository root, into a temporary output folder) ``--repeats`` times and reports the median and
fastest wall time of the whole command, with the ``train_seconds`` the run records. ``--install`` also
times ``pip install -e .`` into a fresh virtual environment (with pip's cache as it is on this machine:
say so when quoting it). Unless ``--no-docs``, it writes the table into docs/benchmarks.md between the
``quickstart-time`` markers and the sentence the README quotes between the README's markers, so the
README's time always comes from this script and names its machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from doc_blocks import markdown_table, print_and_publish, replace_block

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    cpu = platform.processor()
    if Path("/proc/cpuinfo").is_file():
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), cpu)
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    return f"{cpu}, {os.cpu_count()} cores, OMP_NUM_THREADS {threads}, {sys.platform}, Python {platform.python_version()}"


def time_training(exe: str, out: Path, index: int) -> tuple[float, float]:
    """(wall seconds of the command, train_seconds it recorded)."""
    name = f"quickstart-time-{index}"
    start = time.perf_counter()
    subprocess.run([exe, "train", "-c", "configs/quickstart.yaml", f"output_dir={out}", f"name={name}"],
                   cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    return wall, float(json.loads((out / name / "results.json").read_text())["train_seconds"])


def time_install(work: Path) -> float:
    """Seconds of ``python -m venv`` + ``pip install -e .`` (the README's first command up to training)."""
    venv = work / "venv"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-e", str(ROOT)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--install", action="store_true", help="also time venv creation + pip install -e . (slow; uses the network or pip's cache)")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    exe = shutil.which("longtail")
    if exe is None:
        sys.exit("the `longtail` command is not on PATH; activate the environment that installed longtail")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = [time_training(exe, Path(tmp), i) for i in range(args.repeats)]
        walls, trains = [w for w, _ in runs], [t for _, t in runs]
        rows.append(["`longtail train -c configs/quickstart.yaml`", f"{statistics.median(walls):.1f}", f"{min(walls):.1f}",
                     f"{statistics.median(trains):.1f}"])
        if args.install:
            rows.append(["`python3 -m venv .venv && pip install -e .`", f"{time_install(Path(tmp)):.1f}", "-", "-"])
    table = markdown_table(["command", "median wall s", "fastest wall s", "median train_seconds"], rows)
    where = machine()
    command = f"python benchmarks/quickstart_time.py --repeats {args.repeats}{' --install' if args.install else ''}"
    print_and_publish(table, where, command, f"{args.repeats} quickstart runs, one after another; wall time of the whole command",
                      ROOT / "docs" / "benchmarks.md", "quickstart-time", write=not args.no_docs)
    if not args.no_docs:
        sentence = (f"The training command took {statistics.median(walls):.0f} seconds (median of {args.repeats}) on {where} "
                    "(`benchmarks/quickstart_time.py`, docs/benchmarks.md).")
        replace_block(ROOT / "README.md", "quickstart-time", sentence)
        print(f"updated {ROOT / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
