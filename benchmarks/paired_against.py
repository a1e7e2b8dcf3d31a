"""A grid's paired column against another baseline, from its CSV and saved test decisions (no training).

    python benchmarks/paired_against.py benchmarks/results/ham10000_pretrained.csv mbit [--metric balanced_accuracy]

``longtail bench`` compares every method with the grid's ``paired_against`` method; a reading that asks
whether the leader beats the runner-up needs the same two-level bootstrap with the leader as the baseline.
This prints that column as a Markdown table (the same interval, p-value and Holm correction as bench's,
from ``longtail.bench.paired``), reading the run folders or the grid's ``.predictions`` archive.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from longtail.bench.archive import archive_root
from longtail.bench.paired import paired_against, paired_cell


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("results_csv", type=Path, help="a grid's benchmarks/results/<name>.csv")
    parser.add_argument("baseline", help="the method every other method is compared with")
    parser.add_argument("--metric", default="balanced_accuracy")
    args = parser.parse_args()
    rows = list(csv.DictReader(args.results_csv.open()))
    if args.baseline not in {r["method"] for r in rows}:
        parser.error(f"no method '{args.baseline}' in {args.results_csv}; pick one of its method column")
    out = paired_against(rows, args.baseline, args.metric, archive=archive_root(args.results_csv))
    print(f"| dataset | method | {args.metric} - {args.baseline} [95% CI] | CI excludes 0 |")
    print("|---|---|---|---|")
    for (dataset, method), entry in sorted(out.items()):
        diff, verdict = paired_cell(entry)
        print(f"| {dataset} | {method} | {diff} | {verdict} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
