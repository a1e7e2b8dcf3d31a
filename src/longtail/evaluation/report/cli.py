"""The ``longtail report`` and ``longtail compare`` commands (a CLI plug-in, see ``cli.commands.PLUGIN_COMMANDS``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .comparison import compare
from .render import write_report


def run_report(args: argparse.Namespace) -> int:
    path = write_report(args.run_dir)
    print(f"wrote {path} and {path.with_suffix('.md')}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    print(compare(args.run_dirs, args.out), end="")
    if args.out:
        stem = Path(args.out).with_suffix("") if Path(args.out).suffix in (".md", ".csv") else Path(args.out)
        print(f"wrote {stem}.md and {stem}.csv")
    return 0


def add_commands(subparsers: Any) -> None:
    """Add ``report RUN_DIR`` and ``compare RUN_DIR... [--out FILE]`` (handlers in ``func``)."""
    p = subparsers.add_parser("report", help="write report.html + report.md of a run directory", description="Write a self-contained HTML report (and a Markdown version) of a run directory.")
    p.add_argument("run_dir", help="a run directory written by `longtail train`")
    p.set_defaults(func=run_report)
    p = subparsers.add_parser("compare", help="compare runs side by side", description="Print a Markdown table of the key metrics of several runs.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories to compare")
    p.add_argument("--out", help="also write the table to OUT.md and OUT.csv")
    p.set_defaults(func=run_compare)
