"""Per-batch cost of the three ways the *_pretrained recipes train EfficientNet-Lite0, relative to a plain
fine-tune (every tensor trainable): the head-only warm-up, and fine-tuning with the stem and first two
stages frozen (stages[].trainable_fraction 0.818; --fraction 0.32 times the *_mel_nv recipes' HMLoss-style
fractional fine-tuning instead).

Ratios are what this script is for: they scale a known wall time of a plain fine-tune to a recipe, and
they hold up better than absolute times on a shared machine because the three modes are timed in
alternation. Run from the repository root:

    python benchmarks/finetune_cost.py [--size 112] [--batch 64] [--rounds 5] [--threads 2] [--fraction 0.818] [--channels-last]

``--channels-last`` adds a 'full NHWC' row: the full fine-tune with batches and conv weights in NHWC
layout (train.channels_last), timed against the NCHW 'full' row in the same alternation.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from longtail.core.schema import ModelConfig
from longtail.models import build_model


def step_seconds(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, mode: str, fraction: float = 0.818) -> float:
    """Wall seconds of one forward + backward in ``mode`` ('full', 'frozen': the last ``fraction`` of tensors trained, or 'head')."""
    model.freeze_backbone(mode == "head")  # type: ignore[operator]
    if mode == "frozen":
        model.freeze_fraction(fraction)  # type: ignore[operator]
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fraction", type=float, default=0.818, help="trainable_fraction of the 'frozen' mode")
    parser.add_argument("--channels-last", action="store_true", help="also time the full fine-tune in NHWC layout")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="timm", arch="tf_efficientnet_lite0", pretrained="efficientnet_lite0"), 7, 3).train()
    x, y = torch.randn(args.batch, 3, args.size, args.size), torch.randint(0, 7, (args.batch,))
    # each row: (model, batch, step_seconds mode)
    runs = {"full": (model, x, "full"), "frozen": (model, x, "frozen"), "head": (model, x, "head")}
    if args.channels_last:
        nhwc = copy.deepcopy(model).to(memory_format=torch.channels_last)
        runs["full NHWC"] = (nhwc, x.contiguous(memory_format=torch.channels_last), "full")
    modes = list(runs)
    for net, batch, how in runs.values():  # warm-up
        step_seconds(net, batch, y, how, args.fraction)
    times: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(args.rounds):
        for mode, (net, batch, how) in runs.items():
            times[mode].append(step_seconds(net, batch, y, how, args.fraction))
    full = sorted(times["full"])[len(times["full"]) // 2]
    print(f"| mode ({args.size} px, batch {args.batch}, {args.threads} threads) | median s/batch | relative to full |")
    print("| --- | ---: | ---: |")
    for mode in modes:
        median = sorted(times[mode])[len(times[mode]) // 2]
        print(f"| {mode} | {median:.3f} | {median / full:.2f} |")


if __name__ == "__main__":
    main()
