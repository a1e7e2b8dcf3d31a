"""Start-up time of the `longtail` command against a bare Python start.

    python benchmarks/cli_startup.py [--repeats 7] [--no-docs]

Runs ``python -c pass``, ``longtail --help``, ``longtail --version`` and ``longtail list`` (the
console script of the active environment) ``--repeats`` times each, in turn, and reports the median
and the fastest wall time. Each run also says whether it imported torch (it must not). Writes the
table into docs/benchmarks.md between the ``cli-startup`` markers unless ``--no-docs``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from doc_blocks import markdown_table, print_and_publish

ROOT = Path(__file__).resolve().parents[1]
# a wrapper that runs the CLI as the console script does, then says whether torch was imported
PROBE = "import sys; from longtail.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\nsys.stderr.write('TORCH=%d' % ('torch' in sys.modules))"


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def imports_torch(args: list[str]) -> bool:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True)
    return out.stderr.endswith("TORCH=1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    exe = shutil.which("longtail")
    if exe is None:
        sys.exit("the `longtail` command is not on PATH; activate the environment that installed longtail")
    cases = {
        "python -c pass": ([sys.executable, "-c", "pass"], None),
        "longtail --help": ([exe, "--help"], ["--help"]),
        "longtail --version": ([exe, "--version"], ["--version"]),
        "longtail list": ([exe, "list"], ["list"]),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):  # interleaved, so a burst of load on a shared machine hits every case alike
        for name, (argv, _) in cases.items():
            times[name].append(timed(argv))
    rows = []
    for name, (_, probe) in cases.items():
        median = statistics.median(times[name])
        rows.append([f"`{name}`", f"{median:.3f}", f"{min(times[name]):.3f}",
                     "n/a" if probe is None else ("yes" if imports_torch(probe) else "no")])
    table = markdown_table(["command", "median s", "fastest s", "imports torch"], rows)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor()) \
        if Path("/proc/cpuinfo").is_file() else platform.processor()
    machine = f"{cpu}, {os.cpu_count()} cores (shared), {sys.platform}, Python {platform.python_version()}"
    print_and_publish(table, machine, f"python benchmarks/cli_startup.py --repeats {args.repeats}",
                      f"{args.repeats} runs of each, interleaved; wall time of the whole process", ROOT / "docs" / "benchmarks.md", "cli-startup",
                      write=not args.no_docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
