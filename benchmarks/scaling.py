"""Multi-process training throughput and the memory of the three data paths, for docs/scaling.md.

    python benchmarks/scaling.py [--max-per-class 1000] [--lines 200000] [--no-docs]

(a) Images/s of ResNet-32 on the CIFAR-10 JPEG copy (configs/cifar10_lt/ce.yaml without the long
    tail: the balanced set, capped at ``--max-per-class`` per class): 1 process of 1 thread, 2
    processes of 1 thread each (``train.devices=2``: DDP on gloo, the global batch of 128 split 64 +
    64), and, for reference, 1 process of 2 threads. The rate is the second epoch's
    ``images_per_second`` from metrics.jsonl (under DDP: every rank's images over rank 0's epoch time).
(b) Peak resident memory of one data epoch (decode + batching + float conversion, no model) over a
    ``--lines``-line list file: the file lists symbolic links to the CIFAR-10 training JPEGs (so the
    paths are distinct without copying images), decoded at 32 px. Three paths, each in a fresh
    process with an empty cache: ``data.cache: false`` (stream: per-image decode in 2 DataLoader
    workers), ``data.cache: true`` (decode into the in-memory uint8 tensor, then the epoch) and
    ``data.cache: mmap`` (decode chunk by chunk into the cache file, memory-mapped). Peak RSS is
    ``ru_maxrss`` of the process and of its largest worker.
Writes both tables between markers in docs/scaling.md (``--no-docs``: print only).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from doc_blocks import machine_line, markdown_table, print_and_publish

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ROOT.parent / "shared" / "data" / "cifar10_jpeg.tar.gz"
DOC = ROOT / "docs" / "scaling.md"


# ------------------------------------------------------------------------- (a) throughput
def train_rate(out: Path, devices: int, threads: int, max_per_class: int) -> float:
    """Second-epoch images/s of ``longtail.train`` on the balanced CIFAR-10 copy."""
    import longtail

    overrides = [
        f"output_dir={out}", f"name=p{devices}t{threads}", "train.epochs=2", "train.progress=false", "train.tensorboard=false",
        f"train.threads={threads}", f"train.devices={devices}", f"data.max_per_class={max_per_class}",
        "data.long_tail=null", "data.split.val=0.02", "schedule.warmup_epochs=0", f"data.source.root={CIFAR}",
    ]
    run_dir = longtail.train(str(ROOT / "configs/cifar10_lt/ce.yaml"), overrides, overwrite=True).run_dir
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return float(rows[-1]["images_per_second"])


def throughput_table(max_per_class: int) -> str:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        one = train_rate(Path(tmp), devices=1, threads=1, max_per_class=max_per_class)
        for label, devices, threads in (("1 process x 1 thread", 1, 1), ("2 processes x 1 thread (DDP, gloo)", 2, 1),
                                        ("1 process x 2 threads", 1, 2)):
            rate = one if (devices, threads) == (1, 1) else train_rate(Path(tmp), devices, threads, max_per_class)
            rows.append([label, f"{rate:.0f}", f"{rate / one:.2f}x"])
    return markdown_table(["setup", "images/s (epoch 2)", "vs 1 x 1"], rows)


# ---------------------------------------------------------------------------- (b) memory
def make_list_file(work: Path, lines: int) -> tuple[Path, Path]:
    """A ``lines``-line list file of distinct paths (symlinks to the CIFAR-10 train JPEGs, classes
    interleaved, cycled when ``lines`` exceeds the 50,000 images)."""
    from longtail.data.sources.archive import ensure_extracted

    base = ensure_extracted(CIFAR)
    train = next(p for p in base.rglob("train") if p.is_dir())
    classes = sorted(d.name for d in train.iterdir() if d.is_dir())
    per_class = [sorted((train / name).iterdir()) for name in classes]
    images = [(files[k], c) for k in range(min(map(len, per_class))) for c, files in enumerate(per_class)]  # classes interleaved
    root = work / "images"
    rows = []
    for i in range(lines):
        src, label = images[i % len(images)]
        link = root / f"{i // 10000:03d}" / f"{i:07d}.jpg"
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(src)
        rows.append(f"{link.relative_to(root)} {label}")
    listing = work / "train.txt"
    listing.write_text("\n".join(rows) + "\n")
    return listing, root


def one_epoch(listing: str, root: str, cache: str, cache_dir: str) -> dict[str, float]:
    """Run in a fresh process: build the data with ``data.cache: cache`` and read one epoch."""
    import torch

    from longtail.core.schema import DataConfig
    from longtail.data import build_data
    from longtail.engine.batches import iterate_batches

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    cfg = DataConfig(source={"name": "list_file", "train": listing, "root": root, "num_classes": 10},
                     split={"val": 0.01}, image_size=32, channels=3, normalize="none",
                     cache={"false": False, "true": True, "mmap": "mmap"}[cache], cache_dir=cache_dir,
                     num_workers=2 if cache == "false" else 0)
    bundle = build_data(cfg, seed=0)
    built = time.perf_counter() - t0
    seen = 0
    for x, _ in iterate_batches(bundle.train, range(len(bundle.train)), 256, cfg.num_workers, seed=0):
        seen += int(x.float().shape[0])
    return {"images": seen, "build_s": built, "epoch_s": time.perf_counter() - t0 - built,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "storage": bundle.storage()["train"]}


def memory_table(lines: int) -> str:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        listing, root = make_list_file(Path(tmp), lines)
        for cache, label in (("false", "stream (data.cache: false, 2 workers)"), ("true", "in-memory cache (data.cache: true)"),
                             ("mmap", "memory-mapped cache (data.cache: mmap)")):
            cache_dir = Path(tmp) / f"cache-{cache}"  # empty: every path decodes the set once
            out = subprocess.run([sys.executable, __file__, "--epoch", str(listing), str(root), cache, str(cache_dir)],
                                 check=True, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            r = json.loads(out.stdout.strip().splitlines()[-1])
            worker = f"{r['worker_rss_mb']:.0f}" if cache == "false" else "-"
            rows.append([label, r["storage"], f"{r['images']}", f"{r['rss_mb']:.0f}", worker,
                         f"{r['build_s']:.0f}", f"{r['epoch_s']:.0f}"])
    return markdown_table(["path", "recorded as", "images", "peak RSS, MB", "largest worker, MB", "build, s", "epoch, s"], rows, text_columns=2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-per-class", type=int, default=1000, help="(a) training images per class")
    ap.add_argument("--lines", type=int, default=200_000, help="(b) lines of the list file")
    ap.add_argument("--no-docs", action="store_true", help="print only, do not update docs/scaling.md")
    ap.add_argument("--epoch", nargs=4, metavar=("LIST", "ROOT", "CACHE", "CACHE_DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.epoch:  # the child process of (b)
        print(json.dumps(one_epoch(*args.epoch)))
        return 0
    command = f"python benchmarks/scaling.py --max-per-class {args.max_per_class} --lines {args.lines}"
    print_and_publish(throughput_table(args.max_per_class), machine_line(1, ", per process"), command,
                      f"CIFAR-10 JPEG copy, balanced, {args.max_per_class} per class", DOC, "scaling-throughput", write=not args.no_docs)
    print_and_publish(memory_table(args.lines), machine_line(1), command,
                      f"{args.lines}-line list file over the CIFAR-10 train JPEGs (symlinks), 32 px", DOC, "scaling-memory", write=not args.no_docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
