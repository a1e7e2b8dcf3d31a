"""Inference cost of RIDE's multi-expert ResNet-32 by expert count, against the plain CIFAR ResNet-32.

For each model: parameters, forward FLOPs per 32 x 32 image (``torch.utils.flop_counter``: 2 x the
multiply-adds of convolutions and matrix products) and the median wall time of an eval-mode forward pass
of a batch, timed in alternation over ``--rounds`` so that load on a shared machine hits every model
alike; the last column is that time over ResNet-32's. Run from the repository root:

    python benchmarks/ride_cost.py [--batch 128] [--rounds 7] [--threads 1] [--no-docs]

Writes the table into docs/benchmarks.md between the ``ride-cost`` markers unless ``--no-docs``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from doc_blocks import markdown_table, print_and_publish
from torch.utils.flop_counter import FlopCounterMode

from longtail.core.schema import ModelConfig
from longtail.models import build_model, count_parameters
from longtail.rundir.provenance import cpu_model

ROOT = Path(__file__).resolve().parents[1]
CLASSES = 10
MODELS = {
    "ResNet-32 (`resnet32`, cosine head)": ModelConfig(name="resnet32", head="cosine"),
    **{f"RIDE, {e} expert{'s' if e > 1 else ''} (`ride_resnet32`, 24/48 wide)": ModelConfig(name="ride_resnet32", head="cosine", num_experts=e)
       for e in (1, 2, 3)},
    "RIDE, 3 experts, full width (`reduce_dimension: false`, 32/64)": ModelConfig(name="ride_resnet32", head="cosine", num_experts=3, reduce_dimension=False),
}


def flops_per_image(model: torch.nn.Module) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, 32, 32))
    return float(counter.get_total_flops())


def forward_seconds(model: torch.nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        start = time.perf_counter()
        model(x)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {name: build_model(cfg, CLASSES, 3).eval() for name, cfg in MODELS.items()}
    x = torch.randn(args.batch, 3, 32, 32)
    for model in models.values():  # warm-up
        forward_seconds(model, x)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            times[name].append(forward_seconds(model, x))
    base_name = next(iter(models))
    base_params, base_flops = count_parameters(models[base_name]), flops_per_image(models[base_name])
    base_time = statistics.median(times[base_name])
    rows = []
    for name, model in models.items():
        params, flops, seconds = count_parameters(model), flops_per_image(model), statistics.median(times[name])
        rows.append([name, f"{params:,}", f"{params / base_params:.2f}", f"{flops / 1e6:.1f}", f"{flops / base_flops:.2f}",
                     f"{1000 * seconds:.0f}", f"{seconds / base_time:.2f}"])
    table = markdown_table(["model (10 classes)", "parameters", "x ResNet-32", "MFLOPs / image", "x ResNet-32",
                            f"forward ms / batch {args.batch}", "x ResNet-32"], rows)
    machine = (f"{cpu_model() or platform.machine()}, {os.cpu_count()} cores (shared), {args.threads} torch thread(s), {platform.system().lower()}, "
               f"torch {torch.__version__}, CPU only")
    print_and_publish(table, machine, f"python benchmarks/ride_cost.py --batch {args.batch} --rounds {args.rounds} --threads {args.threads}",
                      f"random 32 x 32 inputs, eval mode, no gradient; median of {args.rounds} alternating rounds",
                      ROOT / "docs" / "benchmarks.md", "ride-cost", write=not args.no_docs)


if __name__ == "__main__":
    main()
