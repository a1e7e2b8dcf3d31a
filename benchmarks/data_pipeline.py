"""Images/s of the input pipeline: per-sample PIL decode + augment vs cached uint8 + batched ops.

    python benchmarks/data_pipeline.py [--images 4096] [--threads 2] [--data /work/shared/data]

(a) what most training scripts do: a Dataset that opens each JPEG with PIL and runs torchvision
    transforms per image, batched by a DataLoader (0 workers: same CPU budget as (b));
(b) longtail's fast path: images decoded once into the uint8 tensor cache, a DataLoader over the
    in-memory split, then ``build_pipeline(...).batch`` (per-image random crops/flips/jitter on the batch).
Both produce normalised float32 batches of the same shape. The cache is warmed before timing (b);
the one-off decode cost is printed separately. Writes the table into docs/data.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from doc_blocks import machine_line, markdown_table, print_and_publish
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from longtail.core.schema import Component, DataConfig
from longtail.data import build_data, build_pipeline

ROOT = Path(__file__).resolve().parents[1]


class PILDataset(Dataset):
    def __init__(self, paths, targets, transform):
        self.paths, self.targets, self.transform = paths, targets, transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as img:
            return self.transform(img.convert("RGB")), int(self.targets[i])


def rate(loader, post=None, max_images=None):
    n, t = 0, time.perf_counter()
    for x, _ in loader:
        if post is not None:
            x = post(x)
        n += x.shape[0]
        if max_images and n >= max_images:
            break
    return n / (time.perf_counter() - t)


def bench(name, cfg_kwargs, pil_tf, ops, images, batch):
    lazy = build_data(DataConfig(**cfg_kwargs, cache=False, normalize="imagenet"), seed=0)
    sub = lazy.train.subset(range(min(images, len(lazy.train))))
    a = rate(DataLoader(PILDataset(sub.paths, sub.targets, pil_tf), batch_size=batch, shuffle=True))
    t = time.perf_counter()
    cached = build_data(DataConfig(**cfg_kwargs, normalize="imagenet"), seed=0)  # warm (or build) the cache
    warm = time.perf_counter() - t
    pipe = build_pipeline(ops, cached.norm_mean, cached.norm_std, train=True)
    csub = cached.train.subset(range(min(images, len(cached.train))))
    b = rate(DataLoader(csub, batch_size=batch, shuffle=True), post=pipe.batch)
    return {"data": name, "images": len(sub), "pil": a, "cached": b, "warm": warm}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", default="/work/shared/data")
    ap.add_argument("--no-docs", action="store_true", help="print only, do not update docs/data.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = Path(args.data)
    norm = v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    to_float = [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)]
    rows = [
        bench("CIFAR-10 JPEG 32px", {"source": {"name": "cifar_jpeg", "path": str(data / "cifar10_jpeg.tar.gz")}},
              v2.Compose([*to_float, v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(), norm]),
              [Component(name="random_crop", size=32, padding=4), Component(name="hflip")], args.images, args.batch),
        bench("HAM10000 200x150 -> 64px",
              {"source": {"name": "ham10000", "path": str(data / "ham10000_200x150.tar.gz")}, "image_size": 64},
              v2.Compose([v2.Resize((64, 64)), *to_float, v2.RandomResizedCrop(64, scale=(0.5, 1.0)),
                          v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(), v2.ColorJitter(0.2, 0.2, 0.2), norm]),
              [Component(name="random_resized_crop", size=64, scale=[0.5, 1.0]), Component(name="hflip"),
               Component(name="vflip"), Component(name="color_jitter", brightness=0.2, contrast=0.2, saturation=0.2)],
              args.images, args.batch),
    ]
    table = markdown_table(
        ["data", "images", "(a) PIL decode + per-sample augment, img/s", "(b) cached uint8 + batched augment, img/s", "speed-up", "cache load/build, s"],
        [[r["data"], str(r["images"]), f"{r['pil']:,.0f}", f"{r['cached']:,.0f}", f"{r['cached'] / r['pil']:.1f}x", f"{r['warm']:.1f}"] for r in rows],
    )
    machine = machine_line(torch.get_num_threads())
    command = f"python benchmarks/data_pipeline.py --images {args.images} --batch {args.batch} --threads {args.threads}"
    data = f"`cifar10_jpeg.tar.gz` and `ham10000_200x150.tar.gz` from the shared data folder (first {args.images} training images)."
    print_and_publish(table, machine, command, data, ROOT / "docs" / "data.md", "benchmark", write=not args.no_docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
