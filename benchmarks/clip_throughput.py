"""Clips/s of longtail's full loop against the model alone, for r3d_18 on 8 x 112 x 112 clips (CPU).

    python benchmarks/clip_throughput.py [--threads 2] [--clips 16] [--batches 2] [--no-docs]

Writes a synthetic EGTEA-format set (``tests/video_fixture.py``: 128 x 128 JPEG frames, 12-20 per
clip, split files) and measures, with batch 8:

(a) train, full loop: ``longtail.train`` for 2 epochs; the second epoch's ``images_per_second``
    (here clips/s: frame decoding, segment sampling, random crop 112 + flip, forward, loss,
    backward, optimizer step);
(b) train, model alone: the same model, loss and optimizer on a synthetic 8 x 3 x 8 x 112 x 112
    batch already in memory;
(c) eval, full loop: ``predict_dataset`` over the validation clips (decode, centre crop, forward);
(d) eval, model alone: forward passes without gradients on the synthetic batch.

It is a short measurement on purpose (a 3D ResNet-18 step takes seconds on a CPU); one reading on a
shared VM is good to about +-15%.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from doc_blocks import machine_line, markdown_table, print_and_publish

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import longtail  # noqa: E402
from longtail.catalog.check import load_config  # noqa: E402
from longtail.data import build_data, build_pipeline  # noqa: E402
from longtail.engine.inference import predict_dataset  # noqa: E402
from longtail.engine.optim import build_optimizer  # noqa: E402
from longtail.engine.steps import default_step
from longtail.losses import build_loss  # noqa: E402
from longtail.models import build_model  # noqa: E402
from tests.video_fixture import write_egtea_fixture  # noqa: E402

BATCH, FRAMES, CROP = 8, 8, 112


def config(paths: dict[str, Path], out: Path, threads: int) -> dict:
    raw = yaml.safe_load((ROOT / "configs" / "egtea" / "fixture_cpu.yaml").read_text())
    raw["name"], raw["output_dir"] = "clip_throughput", str(out)
    raw["data"]["source"].update({k: str(v) for k, v in paths.items()}, frames_per_clip=FRAMES)
    raw["data"]["source"].pop("test")  # no test split: nothing here is about accuracy
    raw["data"]["train_transforms"] = [{"name": "random_crop", "size": CROP}, {"name": "hflip", "p": 0.5}]
    raw["data"]["eval_transforms"] = [{"name": "center_crop", "size": CROP}]
    raw["data"]["batch_size"] = raw["data"]["eval_batch_size"] = BATCH
    raw["model"] = {"name": "r3d_18"}
    raw["train"].update(epochs=2, threads=threads)
    return raw


def model_alone(cfg, bundle, batches: int) -> tuple[float, float]:
    """(train clips/s, eval clips/s) of the model on one synthetic batch, after one warm-up step."""
    model = build_model(cfg.model, bundle.num_classes, bundle.channels, bundle.train_counts)
    loss_fn, optimizer = build_loss(cfg.loss, bundle.train_counts), build_optimizer(model, cfg.optimizer)
    x = torch.randn(BATCH, 3, FRAMES, CROP, CROP)
    y = torch.randint(0, bundle.num_classes, (BATCH,))
    model.train()
    for i in range(batches + 1):
        if i == 1:
            t = time.perf_counter()
        loss = default_step(model, x, y, loss_fn)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    train = batches * BATCH / (time.perf_counter() - t)
    model.eval()
    with torch.no_grad():
        model(x)
        t = time.perf_counter()
        for _ in range(batches):
            model(x)
    return train, batches * BATCH / (time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clips", type=int, default=16, help="training clips (val gets a third of that)")
    ap.add_argument("--batches", type=int, default=2, help="timed model-alone batches")
    ap.add_argument("--no-docs", action="store_true", help="print only, do not update docs/benchmarks.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    per = max(1, args.clips // 3)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_egtea_fixture(Path(tmp) / "data", size=128, frames=(12, 20),
                                    per_verb={v: (per, max(1, per // 3), 0) for v in (1, 2, 3)})
        del paths["test"]
        raw = config(paths, Path(tmp) / "runs", args.threads)
        run_dir = longtail.train(raw).run_dir
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        train_full = float(rows[-1]["images_per_second"])
        cfg = load_config(raw=raw)
        bundle = build_data(cfg.data, seed=0)
        model = build_model(cfg.model, bundle.num_classes, bundle.channels, bundle.train_counts).eval()
        pipe = build_pipeline(cfg.data.eval_transforms, bundle.norm_mean, bundle.norm_std, train=False)
        t = time.perf_counter()
        predict_dataset(model, bundle.val, pipe, torch.device("cpu"), BATCH)
        eval_full = len(bundle.val) / (time.perf_counter() - t)
        train_model, eval_model = model_alone(cfg, bundle, args.batches)
        n_train, n_val = len(bundle.train), len(bundle.val)
    table = markdown_table(
        ["r3d_18, 8 x 112 x 112, batch 8", "full loop, clips/s", "model alone, clips/s", "full / model"],
        [["train", f"{train_full:.2f}", f"{train_model:.2f}", f"{train_full / train_model:.0%}"],
         ["eval", f"{eval_full:.2f}", f"{eval_model:.2f}", f"{eval_full / eval_model:.0%}"]],
    )
    machine = machine_line(args.threads, f", batch {BATCH}")
    command = f"python benchmarks/clip_throughput.py --threads {args.threads} --clips {args.clips} --batches {args.batches}"
    data = (f"synthetic EGTEA-format clips ({n_train} train, {n_val} val; 128 x 128 JPEG frames, 12-20 per clip), "
            "random crop 112 + flip in training, centre crop 112 at evaluation; one short reading")
    print_and_publish(table, machine, command, data, ROOT / "docs" / "benchmarks.md", "clip-throughput", write=not args.no_docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
