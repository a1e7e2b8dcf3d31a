"""SPBL's metric table (test split) over the seeds of a benchmark grid, mean ± sample std per cell.

    python benchmarks/spbl_table.py [--runs benchmarks/runs/ham10000_spbl] [--method spbl] [--no-write]

Reads ``results.json`` of every ``<method>-s<seed>`` run and lays out the table the SPBL paper
reports (``longtail.metrics.spbl_tables``: per class precision, recall, specificity, F1, G-mean,
IBA and support, macro and support-weighted rows, then macro P/R/F1, multi-class G-mean, MAUC and
accuracy). The table goes into docs/benchmarks.md between the ``spbl_table`` markers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from doc_blocks import machine_line, markdown_table, print_and_publish

ROOT = Path(__file__).resolve().parents[1]


def cell(values: list[str]) -> str:
    """Mean ± sample std of the formatted numbers of one cell over seeds ('n/a' if any is missing)."""
    if any(v == "n/a" for v in values):
        return "n/a"
    from longtail.bench.grid import format_mean_std, mean_std

    nums = [float(v) for v in values]
    if len(set(nums)) == 1 and (len(nums) == 1 or nums[0].is_integer()):
        return values[0]
    return format_mean_std(*mean_std(nums))


def main() -> int:
    from longtail.metrics import spbl_tables

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=str(ROOT / "benchmarks" / "runs" / "ham10000_spbl"))
    parser.add_argument("--method", default="spbl")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    runs = sorted(Path(args.runs).glob(f"{args.method}-s*/results.json"))
    if not runs:
        raise SystemExit(f"no finished '{args.method}' runs under {args.runs}")
    per_seed = [spbl_tables(json.loads(r.read_text())["test"]) for r in runs]
    parts = []
    for t, (header, _) in enumerate(per_seed[0]):
        rows = [[per_seed[0][t][1][i][0], *(cell([s[t][1][i][j] for s in per_seed]) for j in range(1, len(header)))]
                for i in range(len(per_seed[0][t][1]))]
        parts.append(markdown_table(header, rows))
    seeds = ", ".join(r.parent.name for r in runs)
    print_and_publish(
        "\n\n".join(parts), machine_line(2), f"python benchmarks/spbl_table.py --method {args.method}",
        f"test split of the HAM10000 lesion-grouped split, runs {seeds} (mean ± sample std over seeds)",
        ROOT / "docs" / "benchmarks.md", "spbl_table", write=not args.no_write,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
