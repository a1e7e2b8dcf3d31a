"""The report's figures, drawn with matplotlib's object API and returned as PNG bytes.

No pyplot and no global backend switch, so drawing a report never changes the caller's
matplotlib state; matplotlib is imported only when a figure is drawn (``longtail --help``
stays light). Every figure takes plain metrics / history data, not a ``Run``, so it can be
drawn and tested without a run directory.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ... import metrics as M

MAX_LABELLED_CLASSES = 40  # above this, figures drop per-class tick labels


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


# legend labels of the loss panel: the two curves are different functions, so say which is which
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


def figure_gallery(items: dict[str, np.ndarray], class_names: Sequence[str] | None) -> bytes:
    """Thumbnails titled with their true and predicted class; with ``overlays``, each image's Grad-CAM map beside it."""
    n = len(items["targets"])
    maps = items.get("overlays")
    per_item = 1 if maps is None else 2
    cols = min(n, 8 // per_item)
    rows = math.ceil(n / cols)
    fig = _figure(1.6 * cols * per_item, 1.95 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols * per_item)).ravel()

    def name(i: int) -> str:
        return str(class_names[i]) if class_names is not None and 0 <= i < len(class_names) else str(i)

    for ax in axes:
        ax.axis("off")
    for k in range(n):
        h, w = items["sizes"][k]
        img = items["images"][k, :h, :w]
        ax = axes[k * per_item]
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None, vmin=0, vmax=255)
        ax.set_title(f"true {name(int(items['targets'][k]))}\npred {name(int(items['predictions'][k]))} {float(items['confidence'][k]):.2f}", fontsize=7)
        if maps is not None:
            axes[k * per_item + 1].imshow(maps[k, :h, :w])
            axes[k * per_item + 1].set_title("Grad-CAM", fontsize=7)
    return _png(fig)


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


def figure_risk_coverage(selective: dict[str, Any]) -> bytes | None:
    """Balanced error against coverage, images ranked by max probability and by margin, with the chosen threshold."""
    if not selective.get("max_prob"):
        return None
    fig = _figure(5, 3.6)
    ax = fig.subplots()
    for score, label, style in (("max_prob", "ranked by max probability", "-"), ("margin", "ranked by margin", "--")):
        curve = selective.get(score, {}).get("curve")
        if curve:
            ax.plot(curve["coverage"], curve["risk"], style, label=f"{label} (AURC {M.fmt(selective[score]['aurc_balanced'], 3)})")
    chosen = selective.get("chosen")
    if chosen and chosen.get("balanced_accuracy") is not None:
        ax.plot([chosen["coverage"]], [1 - chosen["balanced_accuracy"]], "o", color="black", label="threshold chosen on validation")
    ax.set_xlabel("coverage (share of images answered)")
    ax.set_ylabel("balanced error of the answered images")
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    return _png(fig)


def figure_subgroups(tables: list[dict[str, Any]]) -> bytes | None:
    """Balanced accuracy per group, one panel per eval.subgroups column; the worst reported group in red."""
    tables = [t for t in tables if any(r["reported"] for r in t["groups"])]
    if not tables:
        return None
    fig = _figure(4.2 * len(tables), 3.4)
    axes = fig.subplots(1, len(tables), squeeze=False)[0]
    for ax, t in zip(axes, tables):
        rows = [r for r in t["groups"] if r["reported"]]
        colours = ["#c44e52" if r["group"] == t["worst"] else "#4c72b0" for r in rows]
        ax.bar(range(len(rows)), [r["balanced_accuracy"] for r in rows], color=colours)
        ax.set_xticks(range(len(rows)), [f"{r['group']}\n(n={r['n']})" for r in rows], rotation=90, fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(f"{t['column']} (gap {M.fmt(t['gap'], 3)})", fontsize=9)
        ax.set_ylabel("balanced accuracy")
    return _png(fig)
