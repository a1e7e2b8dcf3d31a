"""SADE's test-agnostic protocol on the CIFAR-10-LT CPU grid: CE, balanced softmax and SADE, each trained once
per seed, scored on forward- and backward-skewed test sets drawn from the balanced test split.

Columns (top-1 accuracy, mean ± sample std over seeds): CE as trained; CE with post-hoc logit adjustment to
the test set's known prior (``z - log pi + log q``, tau 1); balanced softmax as trained; balanced softmax
moved to the known prior (``z + log q``); SADE's mean of the experts; SADE after test-time
self-supervised aggregation on the test set's unlabelled images (engine/test_time.py, the official CIFAR
settings: 5 epochs, SGD lr 0.1, two views), with the weights it learned, each expert's view agreement alone
(the objective it climbs, read at one expert: the step is drawn to the expert that scores highest) and each
expert's top-1 alone (what the weights at that corner would score); the same
step on training images drawn at each test set's prior (``adapt_images: train_pool``, the official CIFAR
script's form; inference/test_agnostic.py). The cells must be trained first, with their folders kept
(benchmarks/test_agnostic.yaml: the CIFAR grid's recipes and budget, on one machine; any grid with these
three methods will do):

    longtail bench -c benchmarks/test_agnostic.yaml
    python benchmarks/test_agnostic.py [-c benchmarks/test_agnostic.yaml] [--seeds 0 1 2] [--no-docs]
    python benchmarks/test_agnostic.py --methods sade --test-sets forward50 backward50 --marker NAME --csv PATH
    python benchmarks/test_agnostic.py --seeds 1 2 --merge

Writes benchmarks/results/test_agnostic.csv (one row per seed, column and test set, each naming the machine
that scored it) and the table into docs/benchmarks.md between the ``test-agnostic`` markers, unless
``--no-docs`` (then it only prints). ``--merge`` keeps the CSV's rows that this call does not score again
(seeds scored on another machine, whose cells are not here), so that the table covers every seed; a column
that not every seed has names its seeds, and the machine line names each seed's machine.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

import torch
from doc_blocks import machine_line, markdown_table, print_and_publish

from longtail import rundir
from longtail.bench.grid import cell_dir, load_bench
from longtail.inference.test_agnostic import DEFAULT_SHIFTS, Shift, evaluate_shifted

ROOT = Path(__file__).resolve().parents[1]
#: column label -> (grid method, adaptation, the prior the raw logits carry, the images test-time aggregation learns on)
COLUMNS = {
    "CE": ("ce", "none", "train", "test"),
    "CE + LA to known prior": ("ce", "target_prior", "train", "test"),
    "balanced softmax": ("balanced_softmax", "none", "uniform", "test"),
    "BS + known prior": ("balanced_softmax", "target_prior", "uniform", "test"),
    "SADE (mean of experts)": ("sade", "none", "uniform", "test"),
    "SADE + test-time aggregation": ("sade", "test_time_aggregation", "uniform", "test"),
    # the official test_training_cifar.py's form: the weights learned on training images drawn at the test set's prior
    "SADE + aggregation on training-pool images": ("sade", "test_time_aggregation", "uniform", "train_pool"),
}
#: the columns whose expert weights and agreements the table lists, with the short name it gives them
AGGREGATIONS = {"SADE + test-time aggregation": "test images", "SADE + aggregation on training-pool images": "training pool"}
#: what the table lists per seed for each of those columns: row key -> header
ALONE = {"expert_weights": "SADE expert weights (forward, uniform, backward), per seed",
         "expert_agreement": "view agreement of each expert alone (same order), per seed",
         "expert_accuracy": "top-1 of each expert alone (same order), per seed"}
#: of those, the ones scored on the test set whichever images the weights were learned on: listed once
PER_TEST_SET = {"expert_accuracy"}


def trained_cell(spec, grid: str, method: str, seed: int) -> Path:
    run_dir = cell_dir(spec, "default", method, seed)
    if not (run_dir / rundir.RESULTS).is_file():
        sys.exit(f"no finished run in '{run_dir}'; train it first: longtail bench -c {grid} --only {method} --seeds {seed}")
    return run_dir


def chosen_columns(methods: list[str] | None) -> dict[str, tuple[str, str, str, str]]:
    """The columns of ``methods`` (all of them for None), in table order."""
    unknown = sorted(set(methods or []) - {m for m, *_ in COLUMNS.values()})
    if unknown:
        sys.exit(f"--methods {', '.join(unknown)}: the columns are for {', '.join(sorted({m for m, *_ in COLUMNS.values()}))}")
    return {label: c for label, c in COLUMNS.items() if methods is None or c[0] in methods}


def score(spec, grid: str, seeds: list[int], methods: list[str] | None = None, shifts=None) -> list[dict]:
    """One CSV row per (seed, column, test set): ``methods``' columns (all for None) on ``shifts`` (DEFAULT_SHIFTS for None)."""
    columns, shifts = chosen_columns(methods), DEFAULT_SHIFTS if shifts is None else tuple(shifts)
    rows = []
    for seed in seeds:
        by_column: dict[str, list[dict]] = {}
        for method, images in sorted({(m, i) for m, _, _, i in columns.values()}):
            labels = [label for label, (m, _, _, i) in columns.items() if (m, i) == (method, images)]
            wanted = [columns[label][1] for label in labels]
            source = columns[labels[0]][2]
            for r in evaluate_shifted(trained_cell(spec, grid, method, seed), shifts, wanted, prior_source=source, seed=0,
                                      adapt_images=images):
                by_column.setdefault(labels[wanted.index(r["adaptation"])], []).append(r)
        for label in columns:
            for r in by_column[label]:
                rows.append({"seed": seed, "column": label, "test_set": r["test_set"], "images": r["images"], "accuracy": r["accuracy"],
                             "expert_weights": " ".join(f"{w:.2f}" for w in r.get("expert_weights", [])),
                             "expert_agreement": " ".join(f"{a:.3f}" for a in r.get("expert_agreement", [])),
                             "expert_accuracy": " ".join(f"{100 * a:.1f}" for a in r.get("expert_accuracy", [])),
                             "adapt_size": r.get("adapt_size", "")})
    return rows


def table(rows: list[dict]) -> str:
    """Mean ± std top-1 (%) per test set and column of ``rows``, then the aggregations' weights and agreements per seed.

    With several seeds, each per-seed entry starts with its seed (``s1``), and a column that not every seed has
    (rows merged from an earlier call that lacked it) names its seeds in its header."""
    shifts = list(dict.fromkeys(r["test_set"] for r in rows))
    present = {r["column"] for r in rows}
    columns = [label for label in COLUMNS if label in present] + sorted(present - set(COLUMNS))
    aggregations = {label: short for label, short in AGGREGATIONS.items() if label in columns}
    seeds = sorted({r["seed"] for r in rows})

    def seeds_of(label: str) -> list[int]:
        return sorted({r["seed"] for r in rows if r["column"] == label})

    def entry(r: dict, key: str, short: str) -> str:
        tag = " ".join(([f"s{r['seed']}"] if len(seeds) > 1 else []) + ([] if key in PER_TEST_SET else [f"{short}:"]))
        return f"{tag} {r[key]}" if tag else r[key]

    body = []
    for shift in shifts:
        cells = [shift, str(next(r["images"] for r in rows if r["test_set"] == shift))]
        for label in columns:
            values = [100 * r["accuracy"] for r in rows if r["test_set"] == shift and r["column"] == label]
            cells.append(f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}" if len(values) > 1 else f"{values[0]:.1f}")
        for key in ALONE if aggregations else ():
            sources = list(aggregations.items())[:1] if key in PER_TEST_SET else aggregations.items()
            cells.append("; ".join(entry(r, key, short) for seed in seeds for label, short in sources
                                   for r in rows if r["seed"] == seed and r["test_set"] == shift and r["column"] == label and r.get(key)))
        body.append(cells)
    headers = [label if seeds_of(label) == seeds else f"{label} (seeds {', '.join(map(str, seeds_of(label)))})" for label in columns]
    return markdown_table(["test set", "images", *headers, *(ALONE.values() if aggregations else [])], body, text_columns=1)


def read_rows(path: Path) -> list[dict]:
    """The rows of an earlier call's CSV, typed as :func:`score` makes them (keys an older CSV lacks read as empty)."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [{**r, "seed": int(r["seed"]), "images": int(r["images"]), "accuracy": float(r["accuracy"])} for r in csv.DictReader(f)]


def merged(earlier: list[dict], scored: list[dict]) -> list[dict]:
    """``scored`` with the rows of ``earlier`` that it does not score again (same seed, column and test set), by seed."""
    again = {(r["seed"], r["column"], r["test_set"]) for r in scored}
    kept = [r for r in earlier if (r["seed"], r["column"], r["test_set"]) not in again]
    return sorted(kept + scored, key=lambda r: r["seed"])


def seeds_phrase(seeds: list[int]) -> str:
    """'seed 0' or 'seeds 0, 1': the one wording of the docs' seed lists."""
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, sorted(seeds)))}"


def machines(rows: list[dict]) -> str:
    """The machine line of ``rows``: the one machine, or each machine with the seeds it scored."""
    by_machine: dict[str, list[int]] = {}
    for r in rows:
        seeds = by_machine.setdefault(r.get("machine") or "not recorded", [])
        if r["seed"] not in seeds:
            seeds.append(r["seed"])
    if len(by_machine) == 1:
        return next(iter(by_machine))
    return "; ".join(f"{seeds_phrase(seeds)}: {machine}" for machine, seeds in by_machine.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", default="benchmarks/test_agnostic.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", help="only these methods' columns (ce, balanced_softmax, sade); default: all")
    parser.add_argument("--test-sets", nargs="+", help="only these test sets (e.g. forward50 backward50); default: the five of DEFAULT_SHIFTS")
    parser.add_argument("--marker", default="test-agnostic", help="the docs/benchmarks.md block the table goes into")
    parser.add_argument("--csv", default="benchmarks/results/test_agnostic.csv", help="the rows' CSV (relative to the repository root)")
    parser.add_argument("--merge", action="store_true",
                        help="keep the CSV's rows that this call does not score again (seeds scored on another machine)")
    parser.add_argument("--no-docs", action="store_true", help="only print: no CSV, no docs")
    args = parser.parse_args()
    spec = load_bench(args.config)
    shifts = [Shift.parse(name) for name in args.test_sets] if args.test_sets else None
    machine = machine_line(torch.get_num_threads())
    rows = [{**r, "machine": machine} for r in score(spec, args.config, args.seeds, args.methods, shifts)]
    earlier_rows = read_rows(ROOT / args.csv) if args.merge else []
    kept = sorted({r["seed"] for r in earlier_rows} - set(args.seeds))
    if args.merge:
        rows = merged(earlier_rows, rows)
    if not args.no_docs:
        fields = list(dict.fromkeys(key for r in rows for key in r))
        with (ROOT / args.csv).open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, restval="")
            writer.writeheader()
            writer.writerows(rows)
    chosen = (("--methods", args.methods), ("--test-sets", args.test_sets), ("--marker", args.marker), ("--csv", args.csv))
    options = "".join(f" {flag} {' '.join(value) if isinstance(value, list) else value}" for flag, value in chosen
                      if value != parser.get_default(flag.lstrip("-").replace("-", "_"))) + (" --merge" if args.merge else "")
    earlier = f"; {seeds_phrase(kept)} kept from the CSV's earlier rows" if kept else ""
    print_and_publish(table(rows), machines(rows), f"python benchmarks/test_agnostic.py -c {args.config} --seeds {' '.join(map(str, args.seeds))}{options}",
                      f"the {spec.name} grid's cells (seeds {', '.join(map(str, args.seeds))} scored now{earlier}); test sets drawn from its "
                      "balanced test split (data.longtail.shifted_subset, seed 0)", ROOT / "docs" / "benchmarks.md", args.marker,
                      write=not args.no_docs)


if __name__ == "__main__":
    main()
