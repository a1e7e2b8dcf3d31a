"""Training throughput of the HAM10000 backbones by layout and precision, against plain float32 NCHW (issue #28).

For each backbone at ``--size`` px (144: the *_pretrained recipes' size), one training step is a forward
pass, cross-entropy, backward pass and an AdamW step over every weight, on a synthetic batch already in
memory (the data path costs about 1% of the loop, the throughput table above). Four settings are timed
in alternation over ``--rounds`` after a warm-up, so that drift on a shared machine hits each alike:
float32 NCHW, float32 NHWC (``train.channels_last``), bf16 autocast (``train.precision: bf16``) NCHW and
bf16 NHWC, through the engine's own ``autocast`` and ``as_memory_format``. The table gives the median
images/s of each, the fastest setting and its ratio to float32 NCHW, and what ``train.precision: auto``
picks on this CPU for the model (engine/precision.py), so the rule can be read against the measurement.
Weights are random: the pretrained ones cost the same per step. Run from the repository root:

    python benchmarks/backbone_throughput.py [--size 144] [--batch 32] [--rounds 5] [--threads 2] [--no-docs]

Writes the table into docs/benchmarks.md between the ``backbone-throughput`` markers unless ``--no-docs``.
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

from longtail.core.schema import ModelConfig
from longtail.engine.device import as_memory_format, autocast
from longtail.engine.precision import choose_precision, depthwise_share, device_facts
from longtail.models import build_model
from longtail.rundir.provenance import cpu_model

ROOT = Path(__file__).resolve().parents[1]
CLASSES = 7
BACKBONES = {
    "EfficientNet-Lite0 (timm)": ModelConfig(name="timm", arch="tf_efficientnet_lite0"),
    "EfficientNet-Lite1 (timm)": ModelConfig(name="timm", arch="tf_efficientnet_lite1"),
    "EfficientNet-Lite2 (timm)": ModelConfig(name="timm", arch="tf_efficientnet_lite2"),
    "ResNet-18 (torchvision)": ModelConfig(name="torchvision", arch="resnet18"),
    "RegNetY-400MF (torchvision)": ModelConfig(name="torchvision", arch="regnet_y_400mf"),
}
#: (label, precision, channels_last); the first is the reference
SETTINGS = [("fp32 NCHW", "32", False), ("fp32 NHWC", "32", True), ("bf16 NCHW", "bf16", False), ("bf16 NHWC", "bf16", True)]


class Setting:
    """One backbone in one layout and precision, with its own optimizer (so the settings do not share state)."""

    def __init__(self, config: ModelConfig, precision: str, channels_last: bool, batch: int, size: int) -> None:
        torch.manual_seed(0)
        model = build_model(config, CLASSES, 3).train()
        self.model = model.to(memory_format=torch.channels_last) if channels_last else model
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.x = as_memory_format(torch.randn(batch, 3, size, size), channels_last)
        self.y = torch.randint(0, CLASSES, (batch,))
        self.precision = precision

    def step_seconds(self) -> float:
        device = torch.device("cpu")
        self.optimizer.zero_grad(set_to_none=True)
        start = time.perf_counter()
        with autocast(device, self.precision, self.model):
            loss = torch.nn.functional.cross_entropy(self.model(self.x).float(), self.y)
        loss.backward()
        self.optimizer.step()
        return time.perf_counter() - start


def measure(config: ModelConfig, batch: int, size: int, rounds: int) -> dict[str, float]:
    """Median images/s of each setting of SETTINGS for one backbone, timed in alternation."""
    settings = {label: Setting(config, precision, nhwc, batch, size) for label, precision, nhwc in SETTINGS}
    for setting in settings.values():  # warm-up: the first steps allocate and pick kernels
        setting.step_seconds()
    times: dict[str, list[float]] = {label: [] for label in settings}
    for _ in range(rounds):
        for label, setting in settings.items():
            times[label].append(setting.step_seconds())
    return {label: batch / statistics.median(seconds) for label, seconds in times.items()}


def auto_choice(config: ModelConfig) -> str:
    """What ``train.precision: auto`` runs for this backbone on this machine's CPU."""
    model = build_model(config, CLASSES, 3)
    return choose_precision(device_facts(torch.device("cpu")), depthwise_share(model))[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=144)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated substrings of the backbone names to time (all by default)")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    chosen = {name: cfg for name, cfg in BACKBONES.items() if not args.only or any(s.strip().lower() in name.lower() for s in args.only.split(","))}
    if not chosen:
        raise SystemExit(f"--only {args.only!r} matches no backbone; choose among {', '.join(BACKBONES)}")
    rows = []
    for name, config in chosen.items():
        rates = measure(config, args.batch, args.size, args.rounds)
        reference = rates[SETTINGS[0][0]]
        best = max(rates, key=rates.__getitem__)
        auto = "bf16" if auto_choice(config) == "bf16" else "fp32"
        rows.append([name, best, auto, *(f"{rates[label]:.1f}" for label, _, _ in SETTINGS), f"{rates[best] / reference:.2f}"])
        print(rows[-1], flush=True)
    header = ["backbone", "fastest", "`auto` picks", *(f"{label}, img/s" for label, _, _ in SETTINGS), "fastest / fp32 NCHW"]
    table = markdown_table(header, rows, text_columns=3)
    amx = "AMX" if "amx_bf16" in device_facts(torch.device("cpu")).cpu_flags else "no AMX"
    machine = (f"{cpu_model() or platform.machine()} ({amx}), {os.cpu_count()} cores, {args.threads} torch thread(s), {platform.system().lower()}, "
               f"torch {torch.__version__}, CPU only")
    command = (f"python benchmarks/backbone_throughput.py --size {args.size} --batch {args.batch} --rounds {args.rounds} "
               f"--threads {args.threads}" + (f" --only {args.only}" if args.only else ""))
    print_and_publish(table, machine, command,
                      f"synthetic {args.size} x {args.size} batches of {args.batch}, {CLASSES} classes, random weights; forward, "
                      f"cross-entropy, backward and AdamW step over every weight; median of {args.rounds} alternating rounds",
                      ROOT / "docs" / "benchmarks.md", "backbone-throughput", write=not args.no_docs)


if __name__ == "__main__":
    main()
