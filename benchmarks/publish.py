"""Copy every summary table in benchmarks/results/ into docs/benchmarks.md (between its markers).

    python benchmarks/publish.py

The tables are written by ``longtail bench`` (``benchmarks/results/<name>.md``: mean ± std over seeds
and the provenance of the runs); this script only moves them into the docs, so no number in the docs
is typed by hand. A results file whose markers are missing from the page is appended at its end.
"""

from __future__ import annotations

from pathlib import Path

from doc_blocks import replace_block

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    doc = ROOT / "docs" / "benchmarks.md"
    for table in sorted((ROOT / "benchmarks" / "results").glob("*.md")):
        body = table.read_text().split("\n", 2)[2].strip()  # drop the "# name" title line
        replace_block(doc, f"results:{table.stem}", f"From `benchmarks/results/{table.name}`:\n\n{body}")
        print(f"{table.name} -> {doc.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
