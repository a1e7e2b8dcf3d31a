"""Where a training step's time goes: torch.profiler over the full loop and over the compute-only loop.

    python benchmarks/profile_loop.py [--setup 1] [--batches 9] [--no-docs]

Backs the reading of the throughput table. For one setup of ``throughput.py`` (default: torchvision
ResNet-18 at 64 px on HAM10000) it profiles
(a) the second epoch of a real ``longtail.train`` run (the engine's own loop),
(b) the compute-only loop of ``throughput.py`` (same model, loss, optimizer, batch; synthetic input),
(c) the same compute-only loop with deterministic mode's NaN fill of new tensors switched back on
    (``torch.utils.deterministic.fill_uninitialized_memory``; the engine switches it off),
and reports seconds per batch and the share of the self CPU time of ``aten::fill_`` and
``torchvision::roi_align`` (the random-resized crop). One profile each: the VM's drift applies.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from doc_blocks import machine_line, markdown_table, print_and_publish
from throughput import ROOT, SETUPS, common_overrides, compute_only_rate, prepare
from torch.profiler import ProfilerActivity, profile

import longtail
from longtail.engine import trainer as engine

WATCHED = ("aten::fill_", "torchvision::roi_align")


def profiled(fn: Callable[[], object]) -> tuple[float, dict[str, float]]:
    """Run ``fn`` under the CPU profiler: (wall seconds, share of self CPU time of each watched op)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t = time.perf_counter()
        fn()
        seconds = time.perf_counter() - t
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    return seconds, {name: sum(e.self_cpu_time_total for e in events if e.key == name) / total for name in WATCHED}


def full_loop_profile(config: str, overrides: list[str]) -> tuple[float, dict[str, float], int]:
    """Profile the engine's second training epoch: (seconds, op shares, batches)."""
    original = engine.Trainer._train_one_epoch
    result: dict[str, object] = {}

    def second_epoch_profiled(self, parts):  # type: ignore[no-untyped-def]
        if self.progress.global_epoch != 1:
            return original(self, parts)
        out: list[tuple[float, int]] = []
        result["profile"] = profiled(lambda: out.append(original(self, parts)))
        result["batches"] = out[0][1] // self.cfg.data.batch_size  # drop_last: whole batches only
        return out[0]

    engine.Trainer._train_one_epoch = second_epoch_profiled
    try:
        longtail.train(config, overrides, overwrite=True)
    finally:
        engine.Trainer._train_one_epoch = original
    seconds, shares = result["profile"]  # type: ignore[misc]
    return seconds, shares, int(result["batches"])  # type: ignore[call-overload]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setup", type=int, default=1, help=f"index into throughput.SETUPS: {', '.join(f'{i} = {n}' for i, n in enumerate(SETUPS))}")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-per-class", type=int, default=200)
    ap.add_argument("--batches", type=int, default=9, help="profiled compute-only batches (after 1 warm-up)")
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    name = list(SETUPS)[args.setup]
    config, extra = SETUPS[name]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [*extra, *common_overrides(args, Path(tmp))]
        seconds, shares, batches = full_loop_profile(str(ROOT / config), overrides)
        rows.append(("(a) full loop, second epoch", batches, seconds / batches, shares))
        setup = prepare(str(ROOT / config), overrides)
        for label, fill in (("(b) compute-only", False), ("(c) compute-only, NaN fill on", True)):
            torch.utils.deterministic.fill_uninitialized_memory = fill
            seconds, shares = profiled(lambda: compute_only_rate(setup, args.batches, warmup=1))
            rows.append((label, args.batches + 1, seconds / (args.batches + 1), shares))
        torch.utils.deterministic.fill_uninitialized_memory = False
    table = markdown_table(
        ["loop", "batches", "s / batch", *(f"`{op}` share" for op in WATCHED)],
        [[label, str(n), f"{s:.2f}", *(f"{shares[op]:.1%}" for op in WATCHED)] for label, n, s, shares in rows],
    )
    machine = machine_line(args.threads, ", batch 128, deterministic mode (the engine's default)")
    command = f"python benchmarks/profile_loop.py --setup {args.setup} --threads {args.threads} --max-per-class {args.max_per_class} --batches {args.batches}"
    data = f"{name}; training split capped at {args.max_per_class} images per class."
    print_and_publish(table, machine, command, data, ROOT / "docs" / "benchmarks.md", "profile", write=not args.no_docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
