"""A grid's test metrics at the last epoch beside those of the checkpoint chosen on validation.

    python benchmarks/last_epoch.py -c benchmarks/cifar10_lt_cpu.yaml [--no-write]

The CIFAR-LT originals report the last epoch (or the best epoch on test, which longtail never does);
``longtail bench`` reports the checkpoint chosen on validation. This evaluates every finished cell's
last checkpoint on test (``longtail.evaluate(run, checkpoint="last")``, what ``longtail eval RUN
--checkpoint last`` runs) and lays both out as mean ± sample std over seeds. Post-hoc methods are left
out: their correction was chosen for the selected checkpoint only. The table goes into
docs/benchmarks.md between the ``last_epoch:<grid name>`` markers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from doc_blocks import machine_line, markdown_table, print_and_publish

ROOT = Path(__file__).resolve().parents[1]
METRIC = "balanced_accuracy"  # what bench selects on and reports; on a balanced test set it equals accuracy


def main() -> int:
    import longtail
    from longtail import rundir
    from longtail.bench.grid import cell_dir, cells, format_mean_std, load_bench, mean_std

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", required=True, help="the benchmark YAML whose cells to read")
    parser.add_argument("--no-write", action="store_true", help="print the table without updating docs/benchmarks.md")
    args = parser.parse_args()
    spec = load_bench(args.config)
    groups: dict[tuple[str, str], list[tuple[int, int, float, float]]] = {}  # (seed, selected epoch, selected, last)
    for dataset, method, seed in cells(spec):
        run_dir = cell_dir(spec, dataset, method, seed)
        if spec.methods[method].posthoc or not (run_dir / rundir.RESULTS).is_file():
            continue
        result = rundir.read_json(run_dir / rundir.RESULTS)
        selected, last = result["test"][METRIC], longtail.evaluate(run_dir, split="test", checkpoint="last")[METRIC]
        groups.setdefault((dataset, method), []).append((seed, result["best_epoch"], selected, last))
        print(f"{run_dir}: selected epoch {result['best_epoch']} of {result['epochs']}, test {METRIC} {selected:.4f} selected, {last:.4f} last", flush=True)
    if not groups:
        raise SystemExit(f"no finished cell of {args.config} under {spec.output_dir}; run `longtail bench -c {args.config}` first")
    header = ["dataset", "method", "seeds", "selected epochs", f"{METRIC} (selected)", f"{METRIC} (last)", "last - selected"]
    rows = []
    for (dataset, method), runs in groups.items():
        seeds, epochs, selected_scores, last_scores = zip(*runs)
        differences = [b - a for a, b in zip(selected_scores, last_scores)]
        rows.append([dataset, method, ", ".join(map(str, seeds)), ", ".join(map(str, epochs)),
                     *(format_mean_std(*mean_std(list(v))) for v in (selected_scores, last_scores, differences))])
    print_and_publish(
        markdown_table(header, rows, text_columns=4), machine_line(2), f"python benchmarks/last_epoch.py -c {args.config}",
        f"the test split of every finished cell of {args.config} (runs under {spec.output_dir}); "
        "selected = the checkpoint chosen on validation (the bench table's numbers), last = the final epoch's",
        ROOT / "docs" / "benchmarks.md", f"last_epoch:{spec.name}", write=not args.no_write,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
