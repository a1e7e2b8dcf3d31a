"""Images/s of longtail's full training loop against the model's compute-only rate, and of the data pipeline alone.

    python benchmarks/throughput.py [--threads 2] [--max-per-class 300] [--repeats 3] [--no-docs]

For each setup (ResNet-32 at 32 px on CIFAR-10-LT, torchvision ResNet-18 at 64 px on HAM10000):
(a) full loop: ``longtail.train`` for 2 epochs on a capped training split; the rate is the second
    epoch's ``images_per_second`` from metrics.jsonl (batching from the tensor cache, sampler,
    augmentation, forward, loss, backward, optimizer step and per-batch loss accounting; the
    per-epoch validation and checkpoint writes are outside it);
(b) compute-only: the same model, loss, optimizer and batch size on a synthetic tensor already in
    memory (forward, loss, backward, optimizer step), after warm-up;
(c) data pipeline alone: the same sampler, batching and augmentation without a model.
(a) and (b) alternate ``--repeats`` times and the table gives the medians, with the range of the
per-repeat full/compute ratio: on a shared VM one measurement can be off by 10% or more.
Writes the table between markers in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from doc_blocks import machine_line, markdown_table, print_and_publish

import longtail
from longtail.catalog.check import load_config
from longtail.data import build_data, build_pipeline
from longtail.data.samplers import build_sampler
from longtail.engine.batches import drops_last_batch, iterate_batches
from longtail.engine.optim import build_optimizer
from longtail.engine.steps import default_step
from longtail.losses import build_loss
from longtail.models import build_model

ROOT = Path(__file__).resolve().parents[1]
SETUPS = {
    "ResNet-32 @ 32 px, CIFAR-10-LT": ("configs/cifar10_lt/ce.yaml", []),
    "ResNet-18 (torchvision) @ 64 px, HAM10000": ("configs/ham10000/ce.yaml", ["model.name=torchvision", "model.arch=resnet18"]),
}


def common_overrides(args: argparse.Namespace, out: Path) -> list[str]:
    return [
        f"output_dir={out}", "train.epochs=2", "train.progress=false", f"train.threads={args.threads}",
        f"data.max_per_class={args.max_per_class}", "schedule.warmup_epochs=0",
    ]


def full_loop_rate(config: str, overrides: list[str]) -> float:
    """Second-epoch images/s of a real ``longtail.train`` run (the first epoch pays one-off warm-up)."""
    run_dir = longtail.train(config, overrides, overwrite=True).run_dir
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return float(rows[-1]["images_per_second"])


@dataclass
class Prepared:
    """The config, data bundle and training pipeline of one setup, built once for both measurements."""

    cfg: Any
    bundle: Any
    pipe: Any


def prepare(config: str, overrides: list[str]) -> Prepared:
    cfg = load_config(config, overrides)
    bundle = build_data(cfg.data, seed=cfg.seed)
    pipe = build_pipeline(cfg.data.train_transforms, bundle.norm_mean, bundle.norm_std, train=True)
    bundle.train.sample_transform = pipe.sample
    return Prepared(cfg, bundle, pipe)


def compute_only_rate(setup: Prepared, batches: int, warmup: int = 3) -> float:
    """Forward + loss + backward + optimizer step on one synthetic batch, same model/loss/optimizer."""
    cfg, bundle = setup.cfg, setup.bundle
    model = build_model(cfg.model, bundle.num_classes, bundle.channels, bundle.train_counts)
    loss_fn = build_loss(cfg.loss, bundle.train_counts)
    optimizer = build_optimizer(model, cfg.optimizer)
    x0, _ = next(iter(iterate_batches(bundle.train, range(1), 1, 0, seed=0)))
    x = torch.randn((cfg.data.batch_size, *setup.pipe.batch(x0).shape[1:]), dtype=torch.float32)  # the model's input shape
    y = torch.randint(0, bundle.num_classes, (x.shape[0],))
    model.train()
    t = 0.0
    for i in range(warmup + batches):
        if i == warmup:
            t = time.perf_counter()
        loss = default_step(model, x, y, loss_fn)  # the engine's own step
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return batches * x.shape[0] / (time.perf_counter() - t)


def data_only_rate(setup: Prepared) -> float:
    """Sampler + batching from the cache + the training augmentation, no model (data.drop_last as the engine applies it)."""
    cfg, bundle = setup.cfg, setup.bundle
    sampler = build_sampler(cfg.sampler, np.asarray(bundle.train.targets), cfg.seed)
    batch = cfg.data.batch_size
    for epoch in range(2):  # report the second pass, like the full loop
        sampler.set_epoch(epoch)
        n, t = 0, time.perf_counter()
        for x, _ in iterate_batches(bundle.train, sampler, batch, cfg.data.num_workers, seed=epoch, drop_last=drops_last_batch(len(sampler), batch, cfg.data.drop_last)):
            n += setup.pipe.batch(x).shape[0]
        rate = n / (time.perf_counter() - t)
    return rate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-per-class", type=int, default=300, help="cap on training images per class (epoch length)")
    ap.add_argument("--batches", type=int, default=15, help="timed compute-only batches")
    ap.add_argument("--repeats", type=int, default=3, help="alternating full-loop / compute-only measurements; the table gives medians")
    ap.add_argument("--no-docs", action="store_true", help="print only, do not update docs/benchmarks.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, (config, extra)) in enumerate(SETUPS.items()):
            overrides = [*extra, *common_overrides(args, Path(tmp) / str(i))]
            setup = prepare(str(ROOT / config), overrides)
            fulls, computes = [], []
            for repeat in range(args.repeats):  # alternate, so drift in the VM's speed hits both alike
                fulls.append(full_loop_rate(str(ROOT / config), overrides))
                computes.append(compute_only_rate(setup, args.batches))
                print(f"{name}, repeat {repeat + 1}: full loop {fulls[-1]:,.0f} img/s, compute-only {computes[-1]:,.0f} img/s", flush=True)
            data = data_only_rate(setup)
            ratios = [f / c for f, c in zip(fulls, computes)]
            rows.append((name, statistics.median(fulls), statistics.median(computes), min(ratios), max(ratios), data))
            print(f"{name}: data alone {data:,.0f} img/s", flush=True)
    table = markdown_table(
        ["setup", "full loop, img/s", "compute-only, img/s", "full / compute", f"full / compute, range over {args.repeats}", "data pipeline alone, img/s"],
        [[n, f"{f:,.0f}", f"{c:,.0f}", f"{f / c:.0%}", f"{lo:.0%} to {hi:.0%}", f"{d:,.0f}"] for n, f, c, lo, hi, d in rows],
    )
    machine = machine_line(args.threads, ", batch 128")
    command = f"python benchmarks/throughput.py --threads {args.threads} --max-per-class {args.max_per_class} --batches {args.batches} --repeats {args.repeats}"
    data = f"CIFAR-10-LT (JPEG copy) and HAM10000 from the shared data folder, training splits capped at {args.max_per_class} images per class."
    print_and_publish(table, machine, command, data, ROOT / "docs" / "benchmarks.md", "throughput", write=not args.no_docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
