"""The trust layer of finished HAM10000 runs, as the tables of docs/benchmarks.md (issue #26).

    python benchmarks/trust_tables.py benchmarks/runs/ham10000_trust/trust-s0 [more run dirs] > benchmarks/results/ham10000_trust.md
    python benchmarks/publish.py   # copies it into docs/benchmarks.md

Reads each run's saved validation and test logits (``predictions/*.npz``), its post-hoc correction and
its ``results.json``; refits the conformal sets on validation at alpha 0.1 and 0.05 in both modes (the
run itself stores one) and reads them on test. The calibration, selective, subgroup and case numbers
are the run's own (``results.json``'s ``trust``, ``subgroups`` and ``cases``). Several runs: mean ± std.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from longtail import rundir
from longtail.evaluation.conformal import coverage_report, fit_conformal, prediction_sets
from longtail.evaluation.posthoc import apply_posthoc
from longtail.evaluation.trust import calibrated_probs
from longtail.training.loading import read_posthoc, read_trust


def corrected(run: Path, split: str, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    saved = rundir.load_predictions(run, split)
    posthoc = read_posthoc(run)
    z = apply_posthoc(saved["logits"], saved.get("features"), posthoc, None, None, counts) if posthoc else saved["logits"]
    return calibrated_probs(z, read_trust(run)), saved["targets"]


def conformal_rows(run: Path, names: list[str], counts: np.ndarray) -> dict[tuple[float, str], dict]:
    pv, yv = corrected(run, "val", counts)
    pt, yt = corrected(run, "test", counts)
    out = {}
    for alpha in (0.1, 0.05):
        for mode in ("marginal", "class_conditional"):
            fit = fit_conformal(pv, yv, alpha, mode, names)
            out[(alpha, mode)] = coverage_report(prediction_sets(pt, fit), yt, names)
    return out


def ms(values: list[float]) -> str:
    v = [x for x in values if x is not None]
    if not v:
        return "n/a"
    if all(isinstance(x, int) for x in v):  # counts: images, lesions
        return str(v[0]) if len(set(v)) == 1 else f"{np.mean(v):.1f} ± {np.std(v, ddof=1):.1f}"
    return f"{np.mean(v):.3f}" if len(v) == 1 else f"{np.mean(v):.3f} ± {np.std(v, ddof=1):.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    runs = ap.parse_args().runs
    results = [json.loads((r / rundir.RESULTS).read_text()) for r in runs]
    names = results[0]["class_names"]
    counts = np.asarray(results[0]["train_counts"])
    lines = ["# ham10000_trust", "", f"Runs: {', '.join(str(r) for r in runs)} ({len(runs)} seed{'s' if len(runs) > 1 else ''}); test split.", ""]
    cal = [r["trust"]["test"]["calibration"] for r in results]
    lines += ["| calibration (test) | before | after temperature scaling |", "| --- | --- | --- |"]
    for key in ("ece", "adaptive_ece", "brier", "nll"):
        lines.append(f"| {key} | {ms([c['before'][key] for c in cal])} | {ms([c['after'][key] for c in cal])} |")
    lines.append(f"| temperature | | {ms([c['temperature']['value'] for c in cal])} |")
    conf = [conformal_rows(r, names, counts) for r in runs]
    lines += ["", "| conformal (test) | " + " | ".join(f"coverage {n}" for n in names) + " | coverage all | mean set size |",
              "| --- |" + " --- |" * (len(names) + 2)]
    for alpha in (0.1, 0.05):
        for mode in ("marginal", "class_conditional"):
            reps = [c[(alpha, mode)] for c in conf]
            per = [ms([rep["per_class"][i]["coverage"] for rep in reps]) for i in range(len(names))]
            lines.append(f"| alpha {alpha}, {mode} | " + " | ".join(per) + f" | {ms([rep['coverage'] for rep in reps])} | {ms([rep['mean_set_size'] for rep in reps])} |")
    sel = [r["trust"]["test"]["selective"] for r in results]
    lines += ["", "| selective (test) | value |", "| --- | --- |",
              f"| AURC, top-1 error, by max probability | {ms([s['max_prob']['aurc'] for s in sel])} |",
              f"| AURC, balanced error, by max probability | {ms([s['max_prob']['aurc_balanced'] for s in sel])} |",
              f"| coverage at the validation threshold for 0.8 | {ms([s['chosen']['coverage'] for s in sel])} |",
              f"| balanced accuracy of the answered images | {ms([s['chosen']['balanced_accuracy'] for s in sel])} |",
              f"| balanced accuracy of all images | {ms([r['test_posthoc']['balanced_accuracy'] if 'test_posthoc' in r else r['test']['balanced_accuracy'] for r in results])} |"]
    for t_index, table in enumerate(results[0]["subgroups"]["tables"]):
        lines += ["", f"| {table['column']} (test) | images | balanced accuracy | sensitivity (mel) |", "| --- | --- | --- | --- |"]
        for g_index, row in enumerate(table["groups"]):
            rows = [r["subgroups"]["tables"][t_index]["groups"][g_index] for r in results]
            lines.append(f"| {row['group']} | {ms([x['n'] for x in rows])} | {ms([x['balanced_accuracy'] for x in rows])} | {ms([x['sensitivity'] for x in rows])} |")
        worst = [r["subgroups"]["tables"][t_index]["worst"] for r in results]
        lines.append(f"| worst group (per seed) | {', '.join(str(w) for w in worst)} | gap {ms([r['subgroups']['tables'][t_index]['gap'] for r in results])} | |")
    cases = [r["cases"] for r in results]
    lines += ["", "| lesion-level (test) | images | lesions |", "| --- | --- | --- |"]
    for key in ("balanced_accuracy", "accuracy", "macro_f1"):
        lines.append(f"| {key} | {ms([c['image'][key] for c in cases])} | {ms([c['case'][key] for c in cases])} |")
    lines.append(f"| count | {ms([c['images'] for c in cases])} | {ms([c['cases'] for c in cases])} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
