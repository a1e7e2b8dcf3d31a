"""Run reports: one self-contained HTML page (+ Markdown) per run directory, and run comparisons.

Everything is read back from the files a run leaves (``config.yaml``, ``metrics.jsonl``,
``results.json``, ``posthoc.json``, ``predictions/*.npz``; layout in docs/architecture.md), so a
report can be rebuilt at any time and a half-finished run still gets one: each missing piece is
named on the page instead of failing. Figures are drawn with matplotlib's object API (no
pyplot, no global backend switch) and embedded as base64 PNG, so the HTML file can be mailed or
archived alone. The Markdown version links the same PNGs from ``report_files/``.
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from . import metrics as M
from .errors import LongtailError
from .posthoc import load_posthoc

SPLITS = ("test", "val")
MAX_LABELLED_CLASSES = 40  # above this, figures drop per-class tick labels
COMPARE_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "gmean", "mauc", "macro_auc", "ece")


# ------------------------------------------------------------------------------------ load
@dataclass
class Run:
    """What a run directory holds; every piece may be missing (see ``notes``)."""

    run_dir: Path
    config: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    results: dict[str, Any] | None = None
    posthoc: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # split -> metrics.compute dict
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str((self.config or {}).get("name") or self.run_dir.name)

    @property
    def class_names(self) -> list[str] | None:
        names = (self.results or {}).get("class_names")
        return [str(n) for n in names] if names else None

    @property
    def train_counts(self) -> list[int] | None:
        counts = (self.results or {}).get("train_counts")
        return [int(c) for c in counts] if counts is not None else None

    def predictions(self, split: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(logits, targets) of the labelled rows of predictions/<split>.npz, or None."""
        return _predictions(self, split)

    @property
    def main_split(self) -> str | None:
        """'test' when there is a test split, else 'val', else None."""
        return next((s for s in SPLITS if s in self.metrics), None)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise LongtailError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); rerun `longtail eval` to rewrite it") from None


def load_run(run_dir: str | Path) -> Run:
    """Read a run directory; missing files become notes, never errors."""
    root = Path(run_dir)
    if not root.is_dir():
        raise LongtailError(f"run directory '{root}' not found; pass the folder a `longtail train` run wrote (under runs/)")
    run = Run(root)
    cfg_path = root / "config.yaml"
    if cfg_path.is_file():
        try:
            loaded = yaml.safe_load(cfg_path.read_text())
            run.config = loaded if isinstance(loaded, dict) else None
        except yaml.YAMLError:
            run.notes.append("config.yaml is not valid YAML; the configuration summary is missing.")
    else:
        run.notes.append("No config.yaml: the configuration summary is missing.")
    run.history = _read_history(root / "metrics.jsonl", run.notes)
    results_path = root / "results.json"
    if results_path.is_file():
        run.results = _read_json(results_path)
    else:
        run.notes.append("No results.json: the run has not been evaluated yet (run `longtail eval RUN_DIR`).")
    run.posthoc = load_posthoc(root)
    _collect_metrics(run)
    return run


def _read_history(path: Path, notes: list[str]) -> list[dict[str, Any]]:
    if not path.is_file():
        notes.append("No metrics.jsonl: no training curves.")
        return []
    rows, bad = [], 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad += 1  # e.g. the last line of a run killed mid-write
            continue
        if isinstance(row, dict):
            rows.append(row)
    if bad:
        notes.append(f"metrics.jsonl: skipped {bad} unreadable line(s).")
    return rows


def _collect_metrics(run: Run) -> None:
    """Metrics per split from results.json, else recomputed from predictions/<split>.npz."""
    results = run.results or {}
    for split in SPLITS:
        if isinstance(results.get(split), dict):
            run.metrics[split] = results[split]
            continue
        npz = run.run_dir / "predictions" / f"{split}.npz"
        if npz.is_file():
            with np.load(npz) as data:
                if "logits" not in data or "targets" not in data:
                    run.notes.append(f"{npz.name} lacks 'logits' or 'targets'; {split} metrics skipped.")
                    continue
                logits, targets = data["logits"], data["targets"]
            labelled = targets >= 0
            if labelled.any():
                run.metrics[split] = M.compute(logits[labelled], targets[labelled], run.train_counts, run.class_names)
    if "test" not in run.metrics:
        run.notes.append("No test split (or no test labels): the metrics below are on the validation split.")
    if not run.metrics:
        run.notes.append("No evaluated split at all: no metrics, tables or figures.")


# --------------------------------------------------------------------------------- figures
def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)  # constrained layout already fits; "tight" would draw twice
    return buf.getvalue()


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _class_ticks(ax: Any, names: Sequence[str]) -> None:
    if len(names) <= MAX_LABELLED_CLASSES:
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{len(names)} classes, head to tail")


def figure_counts_recall(metrics: dict[str, Any], train_counts: Sequence[int] | None) -> bytes:
    """Train-count histogram beside per-class recall, classes sorted head to tail."""
    per_class = metrics["per_class"]
    counts = np.asarray(train_counts if train_counts is not None else [p["support"] for p in per_class])
    order = np.argsort(-counts, kind="stable")
    names = [per_class[i]["name"] for i in order]
    recall = [per_class[i]["recall"] for i in order]
    fig = _figure(11, 3.6)
    left, right = fig.subplots(1, 2)
    left.bar(range(len(order)), counts[order], color="#4c72b0")
    left.set_title("training images per class" if train_counts is not None else "test images per class (no train counts)")
    if counts.max() > 20 * max(counts.min(), 1):
        left.set_yscale("log")
    _class_ticks(left, names)
    x = [i for i, r in enumerate(recall) if r is not None]
    right.bar(x, [recall[i] for i in x], color="#dd8452")
    missing = [i for i, r in enumerate(recall) if r is None]
    if missing:
        right.plot(missing, [0.0] * len(missing), "x", color="grey", label="not in this split")
        right.legend(fontsize=7)
    right.set_ylim(0, 1)
    right.set_title("per-class recall (same order)")
    _class_ticks(right, names)
    return _png(fig)


def figure_confusion(metrics: dict[str, Any]) -> bytes:
    """Row-normalised confusion matrix (rows = true class; absent classes are empty rows)."""
    cm = np.asarray(metrics["confusion_matrix"], dtype=np.float64)
    names = [p["name"] for p in metrics["per_class"]]
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    size = min(4 + 0.3 * len(names), 11)
    fig = _figure(size + 1, size)
    ax = fig.subplots()
    image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (row-normalised)")
    if len(names) <= MAX_LABELLED_CLASSES:
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
    if len(names) <= 12:
        for i in range(len(names)):
            for j in range(len(names)):
                if rows[i, 0] > 0:
                    ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7, color="white" if norm[i, j] > 0.5 else "black")
    return _png(fig)


def figure_reliability(metrics: dict[str, Any]) -> bytes | None:
    """Reliability diagram (accuracy vs confidence per bin) over the confidence histogram."""
    rel = metrics.get("reliability")
    if not rel:
        return None
    edges = np.asarray(rel["edges"])
    centers = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    fig = _figure(5, 5.5)
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    filled = [i for i, a in enumerate(rel["accuracy"]) if a is not None]
    top.bar(centers[filled], [rel["accuracy"][i] for i in filled], width=width * 0.95, color="#4c72b0", label="accuracy")
    top.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.set_title(f"reliability (ECE {M.fmt(metrics.get('ece'))})")
    top.legend(fontsize=7, loc="upper left")
    bottom.bar(centers, rel["count"], width=width * 0.95, color="#8c8c8c")
    bottom.set_xlabel("confidence (max probability)")
    bottom.set_ylabel("samples")
    bottom.set_xlim(0, 1)
    return _png(fig)


LOSS_LABELS = {"train_loss": "training (the method's loss)", "val_loss": "validation (cross-entropy)"}


def figure_curves(history: list[dict[str, Any]]) -> bytes | None:
    """Training loss, validation metrics and learning rate per epoch, stage changes marked."""
    rows = [r for r in history if isinstance(r.get("epoch"), (int, float))]
    if not rows:
        return None
    epochs = [r["epoch"] for r in rows]
    val_keys = sorted({k for r in rows for k, v in r.items() if k.startswith("val_") and isinstance(v, (int, float)) and k != "val_loss"})
    panels = [("train_loss", "loss", ["train_loss", "val_loss"]), ("val", "validation", val_keys), ("lr", "learning rate", ["lr"])]
    panels = [p for p in panels if any(isinstance(r.get(k), (int, float)) for r in rows for k in p[2])]
    if not panels:
        return None
    from matplotlib.ticker import MaxNLocator

    fig = _figure(4.2 * len(panels), 3.4)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    stage_changes = [rows[i]["epoch"] for i in range(1, len(rows)) if rows[i].get("stage") != rows[i - 1].get("stage")]
    for ax, (_, title, keys) in zip(axes, panels):
        for key in keys:
            pts = [(r["epoch"], r[key]) for r in rows if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
            if pts:
                label = key[4:] if title == "validation" else LOSS_LABELS.get(key, key)
                ax.plot(*zip(*pts), marker="." if len(pts) < 50 else None, label=label)
        for x in stage_changes:
            ax.axvline(x - 0.5, color="grey", linestyle=":", linewidth=1)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if title == "validation":  # every logged validation metric lies in [0, 1]; legend below the axes
            ax.set_ylim(0, 1)
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
        else:
            ax.legend(fontsize=7)
        if title == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    axes[0].set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    return _png(fig)


def figure_roc_pr(curves: list[dict[str, Any]]) -> bytes | None:
    """One-vs-rest ROC (left) and precision-recall (right) curve per class, AUC / AP in the legends."""
    drawn = [c for c in curves if "fpr" in c]
    if not drawn:
        return None
    fig = _figure(11, 4.4)
    roc, pr = fig.subplots(1, 2)
    labelled = len(drawn) <= 12
    for c in drawn:
        roc.plot(c["fpr"], c["tpr"], linewidth=1.2, label=f"{c['name']} (AUC {c['auc']:.3f})" if labelled else None)
        pr.step(c["recall"], c["precision"], where="post", linewidth=1.2, label=f"{c['name']} (AP {c['ap']:.3f})" if labelled else None)
    roc.plot([0, 1], [0, 1], ":", color="grey", linewidth=1)
    roc.set(xlabel="false positive rate (1 - specificity)", ylabel="sensitivity", title="ROC, one class vs the rest", xlim=(0, 1), ylim=(0, 1.01))
    pr.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", title="precision-recall, one class vs the rest", xlim=(0, 1), ylim=(0, 1.01))
    if labelled:
        roc.legend(fontsize=7, loc="lower right")
        pr.legend(fontsize=7, loc="lower left")
    return _png(fig)


def figure_gallery(errors: dict[str, np.ndarray], class_names: Sequence[str] | None) -> bytes:
    """Thumbnails of the most confident errors, each titled with its true and predicted class."""
    n = len(errors["targets"])
    cols = min(n, 8)
    rows = math.ceil(n / cols)
    fig = _figure(1.6 * cols, 1.95 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()

    def name(i: int) -> str:
        return str(class_names[i]) if class_names is not None and 0 <= i < len(class_names) else str(i)

    for k, ax in enumerate(axes):
        ax.axis("off")
        if k >= n:
            continue
        h, w = errors["sizes"][k]
        img = errors["images"][k, :h, :w]
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None, vmin=0, vmax=255)
        ax.set_title(f"true {name(int(errors['targets'][k]))}\npred {name(int(errors['predictions'][k]))} {float(errors['confidence'][k]):.2f}", fontsize=7)
    return _png(fig)


# ---------------------------------------------------------------------------------- tables
def pretrained_label(model: dict[str, Any]) -> str:
    """Where the starting weights came from: a packaged name, 'hub', 'file:<name>' or 'none'."""
    if model.get("weights"):
        return f"file:{Path(str(model['weights'])).name}"
    value = model.get("pretrained", False)
    if isinstance(value, str):
        return value
    return "hub" if value else "none"


def _arch(model: dict[str, Any]) -> str:
    return f":{model['arch']}" if model.get("arch") else ""


def config_rows(config: dict[str, Any] | None, posthoc: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, value) lines that say what ran, from the resolved config."""
    if not config:
        return []

    def comp(entry: Any) -> str:
        if not isinstance(entry, dict):
            return str(entry) if entry is not None else "-"
        kwargs = ", ".join(f"{k}={v}" for k, v in entry.items() if k != "name")
        if "name" not in entry:
            return kwargs or "-"
        return f"{entry['name']}({kwargs})" if kwargs else str(entry["name"])

    data = config.get("data") or {}
    model = config.get("model") or {}
    train = config.get("train") or {}
    optim = config.get("optimizer") or {}
    sched = config.get("schedule") or {}
    rows = [
        ("name", str(config.get("name", "-"))),
        ("seed", str(config.get("seed", "-"))),
        ("data", comp(data.get("source"))),
        ("long tail", comp(data.get("long_tail")) if data.get("long_tail") else "as given"),
        ("image size", str(data.get("image_size") or "as stored")),
        ("normalize", comp(data.get("normalize", "-"))),
        ("model", f"{model.get('name', '-')}{_arch(model)} head={model.get('head', '-')} pretrained={pretrained_label(model)}"),
        ("method", comp(config.get("method"))),
    ]
    stages = config.get("stages") or []
    if stages:
        for i, s in enumerate(stages):
            parts = [f"{s.get('epochs')} epochs", f"loss {comp(s.get('loss') or config.get('loss'))}", f"sampler {comp(s.get('sampler') or config.get('sampler'))}"]
            if s.get("class_weights") or config.get("class_weights"):
                parts.append(f"weights {comp(s.get('class_weights') or config.get('class_weights'))}")
            if s.get("freeze_backbone"):
                parts.append("backbone frozen")
            rows.append((f"stage {i + 1} {s.get('name') or ''}".strip(), ", ".join(parts)))
    else:
        rows += [
            ("epochs", str(train.get("epochs", "-"))),
            ("loss", comp(config.get("loss"))),
            ("class weights", comp(config.get("class_weights"))),
            ("sampler", comp(config.get("sampler"))),
        ]
    rows += [
        ("optimizer", f"{optim.get('name', '-')} lr={optim.get('lr', '-')} wd={optim.get('weight_decay', '-')}"),
        ("schedule", f"{sched.get('name', '-')} warmup={sched.get('warmup_epochs', 0)}"),
        ("selection metric", str(train.get("select_metric", "-"))),
    ]
    metric = (config.get("posthoc") or {}).get("metric", "balanced_accuracy")
    for key, entry in posthoc.items():
        if isinstance(entry, dict) and "tau" in entry:
            toward = " toward eval.target_prior" if entry.get("target_prior") is not None else ""
            rows.append((f"post-hoc {key}", f"tau={entry['tau']}{toward} (chosen on validation by {entry.get('metric', metric)}{_val_score(entry)})"))
    return rows


def _val_score(entry: dict[str, Any]) -> str:
    """', 0.6123' from either posthoc.json layout ({val_score} or {scores: {tau: score}}), else ''."""
    score = entry.get("val_score")
    scores = entry.get("scores")
    if score is None and isinstance(scores, dict):
        score = scores.get(entry["tau"], scores.get(str(entry["tau"])))
    return f", {M.fmt(score)}" if isinstance(score, (int, float)) else ""


def result_rows(results: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Model-selection facts from results.json (best epoch, selection metric, training time)."""
    r = results or {}
    rows = []
    if r.get("best_epoch") is not None:
        rows.append(("best checkpoint", f"epoch {r['best_epoch']} of {r.get('epochs', '?')} by validation {r.get('select_metric', '?')} ({M.fmt(r.get('best_val_score'))})"))
    if "stopped_epoch" in r:  # train.early_stopping was set
        stopped = r["stopped_epoch"]
        rows.append(("early stopping", f"stopped after epoch {stopped}" if stopped is not None else "not triggered (the whole budget ran)"))
    if r.get("class_map"):
        rows.append(("classes (data.classes)", "; ".join(f"{new} = {' + '.join(old)}" for new, old in r["class_map"].items())))
    if r.get("train_seconds") is not None:
        rows.append(("training time", f"{float(r['train_seconds']):.1f} s"))
    return rows


def _posthoc_metrics(results: dict[str, Any] | None) -> dict[str, Any] | None:
    block = (results or {}).get("test_posthoc")
    if not isinstance(block, dict):
        return None
    if "balanced_prior" in block and isinstance(block["balanced_prior"], dict):
        return block["balanced_prior"]
    return block if "accuracy" in block else None


def summary_columns(run: Run) -> list[tuple[str, dict[str, Any]]]:
    """(column title, metrics dict) for the summary table: test, test post-hoc, val."""
    cols = []
    if "test" in run.metrics:
        cols.append(("test", run.metrics["test"]))
    ph = _posthoc_metrics(run.results)
    if ph is not None:
        cols.append(("test, post-hoc", ph))
    if "val" in run.metrics:
        cols.append(("validation", run.metrics["val"]))
    return cols


def summary_table(columns: list[tuple[str, dict[str, Any]]]) -> tuple[list[str], list[list[str]]]:
    header = ["metric", *(title for title, _ in columns)]
    rows = []
    for key, label in M.SUMMARY_METRICS:
        if any(key in m for _, m in columns):
            rows.append([label, *(M.fmt(m.get(key)) for _, m in columns)])
    return header, rows


def per_class_table(metrics: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["class", *(label for _, label in M.PER_CLASS_COLUMNS)]
    rows = [[str(p["name"]), *(M.fmt(p.get(k)) for k, _ in M.PER_CLASS_COLUMNS)] for p in metrics["per_class"]]
    return header, rows


# ---------------------------------------------------------------------------------- render
def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def esc(c: str) -> str:
        return str(c).replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]], text: bool = False) -> str:
    """An HTML table; numeric columns are right-aligned unless ``text``."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    cls = " class='text'" if text else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em} th,td{border:1px solid #ddd;padding:.25em .6em}
th{background:#f4f4f4} td:not(:first-child){text-align:right;font-variant-numeric:tabular-nums}
table.text td{text-align:left}
.note{background:#fff6dd;border-left:4px solid #e0b000;padding:.4em .8em;margin:.3em 0}
img{max-width:100%;height:auto;display:inline-block;vertical-align:top;margin:.6em .6em .6em 0}
"""


@dataclass
class Section:
    title: str
    tables: list[tuple[list[str], list[list[str]]]] = field(default_factory=list)
    figures: list[tuple[str, bytes]] = field(default_factory=list)  # (file stem, png)
    text: list[str] = field(default_factory=list)
    text_tables: bool = False  # left-align every column (key/value tables)


def build_sections(run: Run) -> list[Section]:
    """The report's content, independent of the output format."""
    sections: list[Section] = []
    cfg = config_rows(run.config, run.posthoc) + result_rows(run.results)
    if cfg:
        sections.append(Section("Configuration", tables=[(["key", "value"], [list(r) for r in cfg])], text_tables=True))
    split = run.main_split
    if split is not None and not {"per_class", "confusion_matrix"} <= set(run.metrics[split]):
        run.notes.append(f"The {split} metrics in results.json have no per-class table (written by an older version?); rerun `longtail eval`.")
        split = None
    columns = summary_columns(run)
    if columns:
        sections.append(Section("Summary metrics", tables=[summary_table(columns)], text=[M.CONVENTIONS]))
    if split is not None:
        m = run.metrics[split]
        label = "test" if split == "test" else "validation"
        groups = Section(f"Shot groups ({label})", tables=M.group_tables(m))
        if not m.get("shots"):
            groups.text.append("No training class counts in results.json: shot groups cannot be formed.")
        elif m.get("shot_rule"):
            groups.text.append(f"Shot thresholds: {m['shot_rule']}.")
        sections.append(groups)
        figs = Section(f"Figures ({label})")
        figs.figures.append(("counts_recall", figure_counts_recall(m, run.train_counts)))
        figs.figures.append(("confusion", figure_confusion(m)))
        rel = figure_reliability(m)
        if rel is not None:
            figs.figures.append(("reliability", rel))
        sections.append(figs)
    sections += decision_sections(run)
    curves = figure_curves(run.history)
    training = Section("Training curves")
    if curves is not None:
        training.figures.append(("curves", curves))
        if any("val_loss" in r for r in run.history):
            training.text.append("Loss: the training loss is the method's own (margins, weights or prior shifts included); "
                                 "the validation loss is the plain cross-entropy of the validation logits, comparable across methods.")
    else:
        training.text.append("No per-epoch log (metrics.jsonl) to plot.")
    sections.append(training)
    if split is not None:
        sections.append(Section(f"Per-class metrics ({'test' if split == 'test' else 'validation'})", tables=[per_class_table(run.metrics[split])]))
    sections += spbl_sections(run, split)
    return sections


# --------------------------------------------------------------------------------- decision
def _predictions(run: Run, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    npz = run.run_dir / "predictions" / f"{split}.npz"
    if not npz.is_file():
        return None
    with np.load(npz) as data:
        if "logits" not in data or "targets" not in data:
            return None
        logits, targets = data["logits"], data["targets"]
    labelled = targets >= 0
    return (logits[labelled], targets[labelled]) if labelled.any() else None


def decision_sections(run: Run) -> list[Section]:
    """ROC / PR curves, the operating-point table, metrics under the deployment prior, the most confident errors."""
    from .decision import one_vs_rest

    sections = []
    split = run.main_split
    stored = run.predictions(split) if split else None
    if split is not None and stored is not None:
        logits, targets = stored
        names = run.class_names or [str(c) for c in range(logits.shape[1])]
        curves = one_vs_rest(M.softmax(logits.astype(np.float64)), targets, names, with_curves=True)
        label = "test" if split == "test" else "validation"
        section = Section(f"ROC and precision-recall curves ({label})")
        section.tables.append((["class", "images", "ROC AUC", "average precision"], [[c["name"], str(c["positives"]), M.fmt(c["auc"]), M.fmt(c["ap"])] for c in curves]))
        figure = figure_roc_pr(curves)
        if figure is not None:
            section.figures.append(("roc_pr", figure))
        section.text.append("Each class against all the others, from the predicted probability of that class; n/a where the split lacks images of the class.")
        sections.append(section)
    decision = (run.results or {}).get("decision") or {}
    if decision.get("note"):
        run.notes.append(f"Decision tables skipped: {decision['note']}")
    if decision.get("operating_points"):
        sections.append(operating_point_section(decision))
    if decision.get("target_prior"):
        sections.append(target_prior_section(decision, run.class_names))
    errors = run.run_dir / "predictions" / "errors.npz"
    if errors.is_file():
        with np.load(errors) as data:
            loaded = {k: data[k] for k in data.files}
        gallery = Section("Most confident errors (test)", figures=[("errors", figure_gallery(loaded, run.class_names))])
        gallery.text.append(f"The {len(loaded['targets'])} test images the model got wrong with the highest predicted probability "
                            "(true class, predicted class and its probability).")
        sections.append(gallery)
    return sections


def operating_point_section(decision: dict[str, Any]) -> Section:
    rows = decision["operating_points"]
    positive = " + ".join(decision.get("positive") or [])
    on_test = "test_sensitivity" in rows[0]
    header = ["target specificity", "threshold on P(positive)", "validation sensitivity", "validation specificity"]
    header += ["test sensitivity", "test specificity"] if on_test else []
    body = [[f"{r['target_specificity']:.2f}", f"{r['threshold']:.4f}", M.fmt(r["val_sensitivity"]), M.fmt(r["val_specificity"]),
             *([M.fmt(r["test_sensitivity"]), M.fmt(r["test_specificity"])] if on_test else [])] for r in rows]
    text = (f"Positive: {positive} (the summed probability of these classes is the score). Each threshold is the one with the highest "
            "validation sensitivity whose validation specificity reaches the target; the test columns read the same threshold on test.")
    return Section(f"Operating points (positive: {positive})", tables=[(header, body)], text=[text])


def target_prior_section(decision: dict[str, Any], class_names: list[str] | None) -> Section:
    block = decision["target_prior"]
    columns = block["columns"]
    names = class_names or [str(c) for c in range(len(block["prior"]))]
    header = ["metric", *columns]
    body = [["accuracy", *(M.fmt(c["accuracy"]) for c in columns.values())]]
    positive = " + ".join(decision.get("positive") or [])
    if positive:
        for key, label in (("sensitivity", "sensitivity"), ("ppv", "PPV (precision)"), ("npv", "NPV")):
            body.append([f"{label}, {positive}", *(M.fmt((c.get("positive") or {}).get(key)) for c in columns.values())])
    for i, name in enumerate(names):
        body.append([f"PPV, {name}", *(M.fmt(c["per_class"][i]["ppv"]) for c in columns.values())])
        body.append([f"NPV, {name}", *(M.fmt(c["per_class"][i]["npv"]) for c in columns.values())])
    own = next((k for k in block if k.endswith("_prior") and k != "prior"), None)
    prior_rows = [[name, f"{block[own][i]:.4f}" if own else "-", f"{block['prior'][i]:.4f}"] for i, name in enumerate(names)]
    text = ("The test split's class frequencies against eval.target_prior (the frequencies expected where the model is used). "
            "Under a new prior, each class keeps the error rates the test split measured and only the class frequencies change, "
            "so accuracy = sum of prior x recall, and PPV / NPV follow Bayes' rule.")
    return Section("Metrics under the deployment prior", tables=[(["class", own.replace("_", " ") if own else "split prior", "target prior"], prior_rows), (header, body)], text=[text])


# ------------------------------------------------------------------------------------- SPBL
def spbl_paces(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pace records an SPBL run writes into metrics.jsonl, in pace order."""
    return sorted((r for r in history if r.get("kind") == "spbl_pace"), key=lambda r: r["pace"])


def spbl_sections(run: Run, split: str | None) -> list[Section]:
    """SPBL runs: the per-pace table (selection, complexity H, cost vector, curriculum deltas, SVM
    rows), the class balance of the SVM's training set over paces, and SPBL's metric table."""
    paces = spbl_paces(run.history)
    if not paces:
        return []
    names = run.class_names or [str(c) for c in range(len(paces[0]["classifier_rows_per_class"]))]
    overview = (
        ["pace", "pool ratio", "CNN images", "classifier rows", "val bal. acc. (classifier)", "val bal. acc. (CNN)", "CNN s", "features s", "classifier fit s"],
        [[str(r["pace"]), f"{r['ratio']:g}", str(r["cnn_train_images"]), str(r["classifier_rows"]), M.fmt(r["val_balanced_accuracy"]),
          M.fmt(r["cnn_val_balanced_accuracy"]), f"{r['cnn_seconds']:.1f}", f"{r['feature_seconds']:.1f}", f"{r['classifier_fit_seconds']:.1f}"] for r in paces],
    )
    section = Section("SPBL paces", tables=[overview])
    section.text.append(
        "Per pace: k = pool images selected per class, H = class complexity (rescaled), cost = the class's SVM weight, "
        "target / delta = the curriculum rebuilt at feature level, rows / weight = the class in the classifier's training set (all blocks)."
    )
    for r in paces[1:]:
        header = [f"class (pace {r['pace']}, ratio {r['ratio']:g})", "k", "H", "cost", "target", "delta", "rows", "weight"]
        rows = [[names[c], str(r["selected_counts"][c]), f"{r['complexity'][c]:g}", f"{r['cost'][c]:.3f}", str(r["target_counts"][c]),
                 str(r["delta"][c]), str(r["classifier_rows_per_class"][c]), f"{r['classifier_weight_per_class'][c]:.1f}"] for c in range(len(names))]
        section.tables.append((header, rows))
    section.figures.append(("spbl_balance", figure_spbl_balance(paces, names)))
    sections = [section]
    if split is not None:
        label = "test" if split == "test" else "validation"
        sections.append(Section("SPBL metric table", tables=M.spbl_tables(run.metrics[split]), text=[f"On the {label} split, with the final classifier."]))
    return sections


def figure_spbl_balance(paces: list[dict[str, Any]], names: Sequence[str]) -> bytes:
    """Rows per class (log scale) and each class's share of the total sample weight, per pace."""
    fig = _figure(9.0, 3.6)
    ax_rows, ax_share = fig.subplots(1, 2)
    x = [r["pace"] for r in paces]
    rows = np.array([r["classifier_rows_per_class"] for r in paces], dtype=float)
    weight = np.array([r["classifier_weight_per_class"] for r in paces], dtype=float)
    share = weight / np.maximum(weight.sum(axis=1, keepdims=True), 1e-12)
    labelled = len(names) <= MAX_LABELLED_CLASSES
    bottom = np.zeros(len(paces))
    for c, name in enumerate(names):
        ax_rows.plot(x, np.maximum(rows[:, c], 1), marker=".", label=name if labelled else None)
        ax_share.bar(x, share[:, c], bottom=bottom, label=name if labelled else None)
        bottom += share[:, c]
    ax_rows.set_yscale("log")
    ax_rows.set_title("classifier rows per class")
    ax_share.set_title("share of the sample weight")
    for ax in (ax_rows, ax_share):
        ax.set_xlabel("pace")
        ax.set_xticks(x)
    if labelled:
        ax_share.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return _png(fig)


def render_html(run: Run, sections: list[Section]) -> str:
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(run.name)} - longtail report</title><style>{_CSS}</style></head><body>"]
    parts.append(f"<h1>{html.escape(run.name)}</h1><p>Run directory: <code>{html.escape(str(run.run_dir))}</code></p>")
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in run.notes]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        parts += [f"<p>{html.escape(t)}</p>" for t in s.text]
        parts += [_html_table(h, r, s.text_tables) for h, r in s.tables]
        for stem, png in s.figures:
            data = base64.b64encode(png).decode("ascii")
            parts.append(f"<img alt='{html.escape(stem)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(run: Run, sections: list[Section], files_dir: str) -> str:
    parts = [f"# {run.name}", "", f"Run directory: `{run.run_dir}`", ""]
    parts += [f"> {n}\n" for n in run.notes]
    for s in sections:
        parts += [f"## {s.title}", ""]
        parts += [f"{t}\n" for t in s.text]
        parts += [_md_table(h, r) + "\n" for h, r in s.tables]
        parts += [f"![{stem}]({files_dir}/{stem}.png)\n" for stem, _ in s.figures]
    return "\n".join(parts)


def write_report(run_dir: str | Path) -> Path:
    """Write ``report.html`` (self-contained) and ``report.md`` (+ ``report_files/*.png``); return the HTML path."""
    run = load_run(run_dir)
    sections = build_sections(run)
    files = run.run_dir / "report_files"
    figures = [f for s in sections for f in s.figures]
    if figures:
        files.mkdir(exist_ok=True)
        for stem, png in figures:
            (files / f"{stem}.png").write_bytes(png)
    (run.run_dir / "report.md").write_text(render_markdown(run, sections, files.name))
    out = run.run_dir / "report.html"
    out.write_text(render_html(run, sections))
    return out


# --------------------------------------------------------------------------------- compare
def compare_rows(run_dirs: Sequence[str | Path]) -> tuple[list[str], list[list[str]]]:
    """One row per run: name, method, loss, sampler, split, key metrics and shot accuracies."""
    header = ["run", "method", "loss", "sampler", "split", *COMPARE_METRICS, "many", "medium", "few"]
    rows = []
    for d in run_dirs:
        run = load_run(d)
        cfg = run.config or {}
        stages = cfg.get("stages") or [{}]

        def names(key: str) -> str:
            seq = [((s.get(key) or cfg.get(key)) or {}).get("name", "-") for s in stages]
            return " -> ".join(n for i, n in enumerate(seq) if i == 0 or n != seq[i - 1])

        split = run.main_split
        m = run.metrics.get(split, {}) if split else {}
        shots = m.get("shots") or {}
        rows.append(
            [
                run.name,
                (cfg.get("method") or {}).get("name", "-"),
                names("loss"),
                names("sampler"),
                split or "-",
                *(M.fmt(m.get(k)) for k in COMPARE_METRICS),
                *(M.fmt((shots.get(g) or {}).get("accuracy")) for g in M.SHOT_GROUPS),
            ]
        )
    if len({r[0] for r in rows}) < len(rows):  # same config name (e.g. seeds): tell them apart by folder
        for row, d in zip(rows, run_dirs):
            row[0] = str(d)
    return header, rows


def compare(run_dirs: Sequence[str | Path], out: str | Path | None = None) -> str:
    """A Markdown table comparing runs; with ``out``, also written as ``<out>.md`` and ``<out>.csv``."""
    if not run_dirs:
        raise LongtailError("compare needs at least one run directory")
    header, rows = compare_rows(run_dirs)
    table = _md_table(header, rows) + "\n"
    if out is not None:
        stem = Path(out)
        stem = stem.with_suffix("") if stem.suffix in (".md", ".csv") else stem
        stem.parent.mkdir(parents=True, exist_ok=True)
        Path(f"{stem}.md").write_text(table)
        with open(f"{stem}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
    return table


# ------------------------------------------------------------------------------------- CLI
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
