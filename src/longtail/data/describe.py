"""Human-readable summary of a ``DataBundle`` and a class-count histogram."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .build import DataBundle
from .stats import gini, imbalance_ratio, shot_groups


def describe(bundle: DataBundle, thresholds: tuple[int, int] = (100, 20)) -> str:
    """Per-class counts of every split, imbalance ratio, Gini, many/medium/few membership."""
    splits = bundle.splits()
    counts = {k: np.bincount(v.targets[v.targets >= 0], minlength=bundle.num_classes) for k, v in splits.items()}
    train = counts["train"]
    groups = shot_groups(train, thresholds)
    width = max(5, *(len(n) for n in bundle.class_names))
    head = f"{'#':>3}  {'class':<{width}}  " + "  ".join(f"{k:>7}" for k in counts) + "  shot"
    lines = [head, "-" * len(head)]
    order = np.argsort(-train, kind="stable")
    for c in order:
        lines.append(f"{c:>3}  {bundle.class_names[c]:<{width}}  " + "  ".join(f"{counts[k][c]:>7}" for k in counts) + f"  {groups[c]}")
    lines.append(f"{'':>3}  {'total':<{width}}  " + "  ".join(f"{int(counts[k].sum()):>7}" for k in counts))
    unlabelled = {k: int((v.targets < 0).sum()) for k, v in splits.items() if (v.targets < 0).any()}
    many, few = thresholds
    membership = {g: [bundle.class_names[c] for c in range(bundle.num_classes) if groups[c] == g] for g in ("many", "medium", "few")}
    ir = imbalance_ratio(train)
    lines += [
        "",
        f"classes: {bundle.num_classes}   {_item_shape(bundle)}",
        f"imbalance ratio (max/min train count): {ir:.2f}   Gini coefficient of train counts: {gini(train):.3f}",
        f"shot groups by train count (many > {many}, few < {few}): "
        + ", ".join(f"{g} {len(m)}" for g, m in membership.items()),
    ]
    for g, members in membership.items():
        if members:
            lines.append(f"  {g}: {', '.join(members[:20])}{' ...' if len(members) > 20 else ''}")
    if unlabelled:
        lines.append("unlabelled images: " + ", ".join(f"{k} {n}" for k, n in unlabelled.items()))
    if bundle.skipped:
        lines.append("skipped unreadable images: " + ", ".join(f"{k} {len(v)}" for k, v in bundle.skipped.items()))
    lines.append("normalisation mean " + ", ".join(f"{m:.4f}" for m in bundle.norm_mean)
                 + "   std " + ", ".join(f"{s:.4f}" for s in bundle.norm_std))
    return "\n".join(lines)


def plot_class_histogram(bundle: DataBundle, path: str | Path, write: Callable[[Path, bytes], None] | None = None) -> Path:
    """Bar chart of per-class counts (train, val, test), classes sorted by train count; a PNG (or the format ``path``'s suffix names).

    ``write(path, data)`` stores the image: the CLI passes rundir's atomic writer, which this layer
    cannot import; without it the file is written plainly."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    splits = bundle.splits()
    counts = {k: np.bincount(v.targets[v.targets >= 0], minlength=bundle.num_classes) for k, v in splits.items()}
    order = np.argsort(-counts["train"], kind="stable")
    c = bundle.num_classes
    fig = Figure(figsize=(max(6.0, min(0.35 * c + 2, 30.0)), 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(counts)
    x = np.arange(c)
    for k, (name, cnt) in enumerate(counts.items()):
        ax.bar(x + (k - (len(counts) - 1) / 2) * width, cnt[order], width=width, label=name)
    if c <= 60:
        ax.set_xticks(x)
        ax.set_xticklabels([bundle.class_names[i] for i in order], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("images")
    if counts["train"].max() > 20 * max(counts["train"].min(), 1):
        ax.set_yscale("log")
    ax.set_title(f"class counts (imbalance ratio {imbalance_ratio(counts['train']):.1f}, Gini {gini(counts['train']):.2f})")
    ax.legend()
    fig.tight_layout()
    out = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=out.suffix[1:] or "png", dpi=100)
    if write is None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(buf.getvalue())
    else:
        write(out, buf.getvalue())
    return out


def _item_shape(bundle: DataBundle) -> str:
    """'images: C x H x W', or 'clips: C x T x H x W' for a clip source."""
    h, w = bundle.image_size
    frames = getattr(bundle.train, "frames_per_clip", None)
    return f"clips: {bundle.channels} x {frames} x {h} x {w}" if frames else f"images: {bundle.channels} x {h} x {w}"
