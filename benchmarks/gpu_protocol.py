"""One GPU, 12 minutes: the standard CIFAR-10-LT protocol and the HAM10000 recipe at 224 px, as bench rows.

    PYTHONPATH=src python3 benchmarks/gpu_protocol.py [--ham-config configs/ham10000/ce_pretrained.yaml] [--jobs 3] [--part cifar|ham]
    python benchmarks/gpu_protocol.py --smoke            # the same code path on the CPU, tiny, in a temporary folder

What runs, each cell an ordinary ``longtail bench`` cell of one grid (``longtail.bench.grid``: its
run directories, resume, config hashes, CSV and summaries):

- (a) CIFAR-10-LT IR 100, the full 200-epoch protocol of LDAM-DRW (configs/cifar10_lt/ce.yaml and
  ldam_drw.yaml as they are: SGD 0.1, momentum 0.9, weight decay 2e-4, batch 128, 5 warm-up epochs,
  lr x0.01 at epochs 160 and 180, DRW from 160), CE and LDAM-DRW, seed 0;
- (b) HAM10000 with the recipe ``--ham-config`` (default: configs/ham10000/best_cpu.yaml where it
  exists, else configs/ham10000/ce_pretrained.yaml) at ``--ham-size`` 224 px, seeds 0, 1, 2.

Every cell trains on the GPU (``train.device=cuda``) with the GPU data path: the training images held
on the device as uint8 and sliced there (``data.device_resident=true``), the recipe's batched
augmentation on whole batches there, bf16 autocast (``train.precision=bf16``) and NHWC batches
(``train.channels_last=true``). Only those keys change; the loop and the recipes are the usual ones.
``--jobs N`` trains N cells at a time on the one GPU (separate processes: a small model cannot fill
the GPU alone); the rows land in benchmarks/results/gpu_protocol.csv, whose ``machine`` column names
the GPU (``CUDA: <device name>``). The script refuses to start without a CUDA GPU.

``--smoke`` runs the same cells, overrides and code path on the CPU (``train.device=cpu``) with tiny
epochs, a few images per class and one seed each, into a temporary folder (``--out``), never into
benchmarks/results. ``--data-dir DIR`` reads every recipe's data from DIR (the file name its
``data.source.root`` names), for a machine where ../shared/data is elsewhere. Recipe paths are
relative to the repository root; the script runs from there whatever the current folder.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NAME = "gpu_protocol"
RESULTS = f"benchmarks/results/{NAME}.csv"
RUNS = f"benchmarks/runs/{NAME}"
BUDGET_SECONDS = 12 * 60  # what the protocol has to fit in on one GPU
CIFAR = {"cifar10_lt_ce": "configs/cifar10_lt/ce.yaml", "cifar10_lt_ldam_drw": "configs/cifar10_lt/ldam_drw.yaml"}
CIFAR_SEEDS = [0]
HAM_SEEDS = [0, 1, 2]
HAM_CONFIGS = ("configs/ham10000/best_cpu.yaml", "configs/ham10000/ce_pretrained.yaml")  # the first that exists
#: the GPU data path, on every cell (the smoke swaps the device for the CPU)
GPU_PATH = ["train.precision=bf16", "train.channels_last=true", "data.device_resident=true", "train.progress=false"]
#: --smoke: a few images per class, a fraction of the epochs (the schedule's warm-up, milestone and DRW all still happen)
SMOKE_PER_CLASS = 6
SMOKE_CIFAR = ["train.epochs=2", "schedule.warmup_epochs=1", "schedule.milestones=[1]", "train.tensorboard=false", "eval.gallery_cams=false"]
SMOKE_DRW = ["class_weights.start_epoch=2"]  # LDAM-DRW's re-weighting in the second (last) epoch
SMOKE_HAM = ["train.tensorboard=false", "eval.gallery_cams=false"]
SMOKE_HAM_SIZE = 32


def default_ham_config() -> str:
    """configs/ham10000/best_cpu.yaml once it exists, until then configs/ham10000/ce_pretrained.yaml."""
    return next((p for p in HAM_CONFIGS if (ROOT / p).is_file()), HAM_CONFIGS[-1])


def size_overrides(config: str, size: int) -> list[str]:
    """``data.image_size`` set to ``size``, every transform ``size`` that equals the recipe's image size with it
    (a random resized crop to the input size stays one), and every stage's ``image_size`` (progressive resizing)
    scaled by the same factor, so a recipe runs at another resolution unchanged otherwise."""
    from longtail.catalog.check import load_config

    cfg = load_config(config)
    data = cfg.data
    out = [f"data.image_size={size}"]
    for section in ("train_transforms", "eval_transforms"):
        for i, entry in enumerate(getattr(data, section)):
            if data.image_size is not None and entry.kwargs.get("size") == data.image_size:
                out.append(f"data.{section}.{i}.size={size}")
    for i, stage in enumerate(cfg.stages):
        if stage.image_size is not None and isinstance(data.image_size, int):
            out.append(f"stages.{i}.image_size={max(1, round(stage.image_size * size / data.image_size))}")
    return out


def one_epoch_per_stage(config: str) -> list[str]:
    """--smoke: every stage of the recipe (or its single schedule) one epoch long."""
    from longtail.catalog.check import load_config

    cfg = load_config(config)
    return [f"stages.{i}.epochs=1" for i in range(len(cfg.stages))] if cfg.stages else ["train.epochs=1"]


def data_dir_override(config: str, data_dir: Path | None) -> list[str]:
    """``data.source.root`` moved to ``data_dir`` (same file name), or nothing without ``--data-dir``."""
    if data_dir is None:
        return []
    from longtail.catalog.check import load_config

    root = load_config(config).data.source.kwargs.get("root")
    return [] if root is None else [f"data.source.root={data_dir / Path(str(root)).name}"]


def build_spec(args: argparse.Namespace) -> Any:
    """The protocol as one bench grid: the CIFAR methods and the HAM recipe, each with its own overrides."""
    from longtail.bench.grid import BenchSpec

    smoke = args.smoke
    ham = args.ham_config
    device = ["train.device=cpu"] if smoke else ["train.device=cuda", f"train.threads={max(1, (os.cpu_count() or 1) // args.jobs)}"]
    every = [*GPU_PATH, *device, *([f"data.max_per_class={SMOKE_PER_CLASS}"] if smoke else []), *args.set]
    methods: dict[str, Any] = {}
    for name, config in CIFAR.items():
        extra = [*SMOKE_CIFAR, *(SMOKE_DRW if "ldam_drw" in name else [])] if smoke else []
        methods[name] = {"config": config, "overrides": [*data_dir_override(config, args.data_dir), *extra]}
    ham_extra = [*SMOKE_HAM, *one_epoch_per_stage(ham)] if smoke else []
    methods[f"ham10000_{Path(ham).stem}"] = {
        "config": ham, "overrides": [*data_dir_override(ham, args.data_dir), *size_overrides(ham, args.ham_size), *ham_extra]}
    name, out = (f"{NAME}_smoke" if smoke else NAME), args.out
    return BenchSpec.model_validate({
        "name": name,
        "output_dir": str(out / "runs") if out else RUNS,
        "results": str(out / f"{name}.csv") if out else RESULTS,
        "seeds": sorted({*args.cifar_seeds, *args.ham_seeds}),
        "overrides": every,
        "methods": methods,
    })


def parts(spec: Any, args: argparse.Namespace) -> list[tuple[list[str], list[int]]]:
    """(methods, seeds) selections of the grid: the CIFAR methods at their seeds, the HAM recipe at its own (``--part``: one of them)."""
    cifar = [m for m in spec.methods if m in CIFAR]
    ham = [m for m in spec.methods if m not in CIFAR]
    chosen = {"cifar": [(cifar, args.cifar_seeds)], "ham": [(ham, args.ham_seeds)]}
    return chosen.get(args.part, [*chosen["cifar"], *chosen["ham"]])


def run_protocol(spec: Any, selection: list[tuple[list[str], list[int]]], jobs: int) -> list[dict[str, Any]]:
    """Train every selected cell (``jobs`` at a time, the long CIFAR cells first) and write the grid's CSV and summaries.

    With ``jobs`` > 1 each cell is a ``bench`` run of its own in a child process (each rewrites the CSV from the
    finished run directories, atomically); the closing ``bench`` runs find every cell done and write the CSV once more."""
    from longtail.bench import grid

    if jobs > 1:
        cells = [([m], [s]) for methods, seeds in selection for m in methods for s in seeds]
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"), initializer=_log_setup) as pool:
            futures = [pool.submit(grid.run, spec, only, seeds) for only, seeds in cells]
            try:
                for future in futures:
                    future.result()  # a cell's failure, with its own message
            except BaseException:
                for future in futures:
                    future.cancel()  # the cells not started yet; the running ones finish (their directories resume later)
                raise
    rows: list[dict[str, Any]] = []
    for only, seeds in selection:
        rows = grid.run(spec, only, seeds)
    return rows


def _log_setup() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="the same cells and code path on the CPU: tiny epochs and data, one seed each, "
                                                       "into a temporary folder")
    p.add_argument("--ham-config", default=None, help="the HAM10000 recipe (default: configs/ham10000/best_cpu.yaml where it exists, "
                                                      "else configs/ham10000/ce_pretrained.yaml)")
    p.add_argument("--ham-size", type=int, default=None, help="HAM10000 input size in pixels (default 224; --smoke: 32)")
    p.add_argument("--jobs", type=int, default=None, help="cells trained at a time on the one device (default 3; --smoke: 1)")
    p.add_argument("--out", type=Path, default=None, help="folder for the run directories and the CSV (default: benchmarks/runs/gpu_protocol "
                                                         "and benchmarks/results/gpu_protocol.csv; --smoke: a new temporary folder)")
    p.add_argument("--data-dir", type=Path, default=None, help="read each recipe's data archive from this folder (its file name) instead of "
                                                              "its data.source.root")
    p.add_argument("--part", choices=("all", "cifar", "ham"), default="all",
                   help="run only (a) or (b), e.g. one per command where a command may run 10 minutes at most; the CSV keeps "
                        "the rows of both (it is written from every finished run directory)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an override for every cell (repeatable)")
    args = p.parse_args(argv)
    args.ham_config = args.ham_config or default_ham_config()
    args.ham_size = args.ham_size or (SMOKE_HAM_SIZE if args.smoke else 224)
    args.jobs = args.jobs or (1 if args.smoke else 3)
    args.cifar_seeds = CIFAR_SEEDS
    args.ham_seeds = HAM_SEEDS[:1] if args.smoke else HAM_SEEDS
    if args.jobs < 1:
        p.error("--jobs must be 1 or more")
    cwd = Path.cwd()  # the paths given are the caller's; the recipes' are the repository's
    for key in ("out", "data_dir"):
        if getattr(args, key) is not None:
            setattr(args, key, (cwd / getattr(args, key)).resolve())
    if (cwd / args.ham_config).is_file():
        args.ham_config = str((cwd / args.ham_config).resolve())
    if args.smoke and args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix=f"{NAME}_smoke-"))
    return args


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()  # the wall time printed at the end: imports and config reading included
    args = parse_args(argv)
    os.chdir(ROOT)
    if not _importable():  # a GPU machine without the package installed: longtail from src
        sys.path.insert(0, str(ROOT / "src"))
    _log_setup()
    from longtail.core.errors import LongtailError

    try:
        import torch

        if not args.smoke and not torch.cuda.is_available():
            raise LongtailError("benchmarks/gpu_protocol.py needs a CUDA GPU and none is visible; run it on a GPU machine, "
                                "or pass --smoke for the CPU check")
        spec = build_spec(args)
        run_protocol(spec, parts(spec, args), args.jobs)
    except LongtailError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - started
    budget = "" if args.smoke else f" (budget {BUDGET_SECONDS} s on one GPU: {'within' if seconds <= BUDGET_SECONDS else 'OVER'})"
    print(f"{spec.name}: {seconds:.1f} s wall{budget}; rows in {spec.results}", flush=True)
    return 0


def _importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("longtail") is not None


if __name__ == "__main__":
    sys.exit(main())
