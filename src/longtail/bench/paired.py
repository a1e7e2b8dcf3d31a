"""Each method of a grid against a named baseline, across seeds, with an interval (issue #27).

For a method and the baseline trained with the same seeds and tested on the same images, the
difference of a metric is averaged over seeds and given a two-level bootstrap interval
(:func:`longtail.metrics.bootstrap.seed_paired_bootstrap`: seeds drawn with replacement and the
test images resampled, so the interval holds both the seed-to-seed spread and the sampling of the
test set, which every seed shares). With more than one method against the baseline the p-values are
Holm-adjusted over the methods of a dataset. The cells' ``predictions/test.npz`` are read (the
post-hoc-corrected logits of a ``posthoc: true`` cell), so nothing is retrained. For a metric of the
predicted class alone, each cell's test decisions are also kept in the grid's archive (:mod:`.archive`)
and the comparison reads them there, so it still works once the run folders are gone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core.errors import LongtailError
from ..core.schema import BootstrapConfig
from ..evaluation.intervals import check_same_test_set, final_test_predictions
from ..metrics import bootstrap as B
from ..rundir import PREDICTIONS
from .archive import DECISION_METRICS, cell_archive, is_holdout, keep_decisions, load_archive


def _cells(rows: Sequence[dict[str, Any]], dataset: str, method: str) -> dict[int, dict[str, Any]]:
    """seed -> CSV row of the finished holdout cells of (dataset, method)."""
    return {int(r["seed"]): r for r in rows
            if r.get("dataset") == dataset and r.get("method") == method and is_holdout(r)}


#: what platform.machine() says where the CPU model is unknown: rows from before the CSV named the CPU (64f3888)
_BARE_ARCHITECTURES = {"x86_64", "amd64", "aarch64", "arm64", "i386", "i686", "ppc64le", "s390x", "none", ""}


def names_cpu(machine: Any) -> bool:
    """Whether a CSV ``machine`` value names the CPU model (not only the architecture, as rows before 64f3888 do)."""
    return bool(machine) and str(machine).split(",", 1)[0].strip().lower() not in _BARE_ARCHITECTURES


def cell_predictions(row: dict[str, Any], archive: Path | None, metric: str) -> dict[str, Any]:
    """A cell's final test predictions for the comparison: from the archive for a decision metric (written by
    :func:`paired_against` from the run folders that exist), else from the run folder; a one-line error when
    neither holds them."""
    run_dir = Path(row["run_dir"])
    if archive is None or metric not in DECISION_METRICS:
        if not (run_dir / PREDICTIONS / "test.npz").is_file() and not run_dir.is_dir():
            why = f"; {metric} needs the scores, which only the run folder keeps" if archive is not None else ""
            raise LongtailError(f"the run folder '{run_dir}' is gone{why}; rerun the cell to compare it")
        return final_test_predictions(run_dir)
    path = cell_archive(archive, row)
    if not path.is_file():
        raise LongtailError(f"the run folder '{run_dir}' is gone and its test decisions were not saved (no {path.name} in the grid's "
                            f"{archive.name} folder); rerun the cell (delete its CSV row) to compare it")
    kept, config_hash = load_archive(path), str(row.get("config_hash") or "")
    if config_hash and kept["config_hash"] not in ("", config_hash):
        raise LongtailError(f"the saved test decisions '{path}' were made with another config than the CSV row's "
                            f"({kept['config_hash']}, not {config_hash}); rerun the cell to compare it")
    return kept


def paired_against(rows: Sequence[dict[str, Any]], baseline: str, metric: str, boot: BootstrapConfig | None = None,
                   archive: Path | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """(dataset, method) -> {difference, low, high, p_value, p_holm, excludes_zero, seeds, mixed_machines} or {note} when it cannot be computed.

    ``mixed_machines`` lists the seeds whose method and baseline cells name different machines in the CSV (runs on
    two CPUs are not bit-identical, so such a pair also differs by machine); the table's verdict says so.

    ``archive``: the grid's folder of saved test decisions (:func:`.archive.archive_root`), first brought up to date
    from the run folders that exist (every holdout row's, compared or not); None reads only run folders."""
    boot = boot or BootstrapConfig()
    if archive is not None and metric in DECISION_METRICS:
        keep_decisions(rows, archive)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for dataset in sorted({str(r["dataset"]) for r in rows}):
        base = _cells(rows, dataset, baseline)
        base_preds: dict[int, dict[str, Any]] = {}  # read once per dataset, shared by every method's comparison
        methods = sorted({str(r["method"]) for r in rows if r["dataset"] == dataset and r["method"] != baseline})
        done: list[tuple[str, str]] = []
        for method in methods:
            key = (dataset, method)
            try:
                out[key] = _one(base, base_preds, _cells(rows, dataset, method), metric, boot, archive)
                done.append(key)
            except LongtailError as e:
                out[key] = {"note": str(e)}
        if len(done) > 1:
            for key, q in zip(done, B.holm([out[k]["p_value"] for k in done])):
                out[key]["p_holm"] = float(q)
        for key in done:
            out[key]["correction"] = "holm" if len(done) > 1 else "none"
    return out


def _one(base: dict[int, dict[str, Any]], base_preds: dict[int, dict[str, Any]], cells: dict[int, dict[str, Any]], metric: str,
         boot: BootstrapConfig, archive: Path | None) -> dict[str, Any]:
    seeds = sorted(set(base) & set(cells))
    if not seeds:
        raise LongtailError("no seed was run for both this method and the baseline")
    a, b = [], []
    for s in seeds:
        if s not in base_preds:
            base_preds[s] = cell_predictions(base[s], archive, metric)
        pa, pb = cell_predictions(cells[s], archive, metric), base_preds[s]
        check_same_test_set([Path(r["run_dir"]) for r in (base[seeds[0]], base[s], cells[s])], [base_preds[seeds[0]], pb, pa])
        a.append(pa["logits"])
        b.append(pb["logits"])
    first = base_preds[seeds[0]]
    labelled = first["targets"] >= 0
    groups = None if first["groups"] is None or boot.groups == "none" else first["groups"][labelled]
    result = B.seed_paired_bootstrap([x[labelled] for x in a], [x[labelled] for x in b], first["targets"][labelled], groups=groups,
                                     same_test_set=True, resamples=boot.resamples or 1000, confidence=boot.confidence, seed=boot.seed,
                                     metrics=(metric,))[metric]
    # a seed's two cells trained on different machines: float kernels differ by CPU, which moves a run as far as a seed can
    mixed = [s for s in seeds if names_cpu(base[s].get("machine")) and names_cpu(cells[s].get("machine"))
             and base[s]["machine"] != cells[s]["machine"]]
    return {**result, "seeds": len(seeds), "mixed_machines": mixed}


def paired_cell(entry: dict[str, Any] | None) -> tuple[str, str]:
    """(difference with interval, verdict) for a summary table: '+0.0412 [0.0101, 0.0733]', 'yes (Holm p 0.004, 3 seeds)'.

    The verdict says whether the interval excludes zero; with several methods the p-value beside it is
    Holm-adjusted (the interval itself is not), so read a 'yes' with a Holm p above the level as not significant."""
    if not entry:
        return "", ""
    if "note" in entry:
        return "n/a", entry["note"]
    diff = f"{entry['difference']:+.4f} [{entry['low']:.4f}, {entry['high']:.4f}]"
    label, p = ("Holm p", entry["p_holm"]) if "p_holm" in entry else ("p", entry["p_value"])
    mixed = entry.get("mixed_machines") or []
    where = f"; seed{'s' if len(mixed) > 1 else ''} {', '.join(map(str, mixed))} trained on another machine than the baseline's" if mixed else ""
    return diff, f"{'yes' if entry['excludes_zero'] else 'no'} ({label} {p:.3g}, {entry['seeds']} seeds{where})"
