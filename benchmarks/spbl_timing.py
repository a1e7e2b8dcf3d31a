"""SPBL run time: each pace's CNN, feature and SVM-fit seconds (with the pace's validation balanced
accuracy, of the SVM and of the CNN's own head), and how SVM fit time grows with rows.

    python benchmarks/spbl_timing.py [--runs benchmarks/runs/ham10000_spbl] [--sizes 2000 4000 8000] [--no-write]

Reads the pace records (``paces/<k>/pace.json``) of the SPBL runs of ``longtail bench -c
benchmarks/ham10000_spbl.yaml``, and refits the rbf SVM of those runs (same settings: C 1, gamma
'scale', L2-normalised rows, the runs' stored sample weights) on random subsets of their last
pace's training rows at each size, best of ``--repeats`` fits. Both tables go into
docs/benchmarks.md between the ``spbl_timing`` markers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from doc_blocks import machine_line, markdown_table, print_and_publish

ROOT = Path(__file__).resolve().parents[1]


def pace_rows(runs: Path) -> list[list[str]]:
    rows = []
    for run in sorted(p for p in runs.iterdir() if (p / "paces").is_dir()):
        for record in sorted((run / "paces").glob("*/pace.json"), key=lambda p: int(p.parent.name)):
            r = json.loads(record.read_text())
            rows.append([run.name, str(r["pace"]), str(r["cnn_train_images"]), f"{r['cnn_seconds']:.0f}", f"{r['feature_seconds']:.0f}",
                         str(r["classifier_rows"]), f"{r['classifier_fit_seconds']:.1f}",
                         f"{r['val_balanced_accuracy']:.4f}", f"{r['cnn_val_balanced_accuracy']:.4f}"])
    return rows


def svm_rows(runs: Path, sizes: list[int], repeats: int) -> list[list[str]]:
    from longtail.spbl.classifier import fit_classifier, make_classifier

    run = next(p for p in sorted(runs.iterdir()) if (p / "paces").is_dir())
    blocks = [np.load(b) for b in sorted((run / "paces").glob("*/block.npz"), key=lambda p: int(p.parent.name))]
    x = np.concatenate([b["features"] for b in blocks]).astype(np.float64)
    y = np.concatenate([b["labels"] for b in blocks])
    w = np.concatenate([b["stored_weights"] for b in blocks])
    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        idx = rng.choice(len(y), size=min(n, len(y)), replace=False)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            fit_classifier(make_classifier("svm", 1.0, "scale", 0, feature_norm="l2"), x[idx], y[idx], w[idx])
            best = min(best, time.perf_counter() - t0)
        rows.append([str(len(idx)), str(x.shape[1]), f"{best:.2f}", f"{best / len(idx) * 1000:.3f}"])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=str(ROOT / "benchmarks" / "runs" / "ham10000_spbl"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 4000, 8000])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    runs = Path(args.runs)
    paces = markdown_table(["run", "pace", "CNN images", "CNN s", "features s", "SVM rows", "SVM fit s", "val bal. acc. (SVM)", "val bal. acc. (CNN head)"], pace_rows(runs), text_columns=2)
    scaling = markdown_table(["SVM rows", "feature dim", "fit s (best of repeats)", "ms per row"], svm_rows(runs, args.sizes, args.repeats), text_columns=0)
    table = f"Per pace (from each run's `paces/<k>/pace.json`):\n\n{paces}\n\nSVM fit time against rows (rows drawn from the seed-0 run's blocks):\n\n{scaling}"
    print_and_publish(
        table, machine_line(2, ", scikit-learn SVC (libsvm, one thread)"),
        f"python benchmarks/spbl_timing.py --sizes {' '.join(map(str, args.sizes))}",
        "HAM10000 SPBL runs of benchmarks/ham10000_spbl.yaml (ResNet-10 512-d features)",
        ROOT / "docs" / "benchmarks.md", "spbl_timing", write=not args.no_write,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
