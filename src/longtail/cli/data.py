"""``longtail data describe`` and ``longtail data convert`` (wired into ``longtail.cli``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError


def add_commands(subparsers: Any) -> None:
    """Add the ``data`` command group to an argparse sub-parser collection."""
    data = subparsers.add_parser("data", help="inspect and convert datasets")
    sub = data.add_subparsers(dest="data_command", metavar="{describe,convert,extract-frames}")
    sub.required = True

    d = sub.add_parser("describe", help="per-class counts, imbalance ratio, Gini, shot groups + histogram PNG")
    d.add_argument("-c", "--config", required=True, help="a run config (only its data: section is used)")
    d.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.long_tail.imbalance_ratio=50")
    d.add_argument("--out", metavar="DIR", default=None, help="write <config name>_classes.png (class histogram) and <config name>_describe.txt "
                   "into DIR (default: print only; '--out .' for the current directory)")
    d.add_argument("--plot", metavar="FILE", default=None, help="write the class histogram PNG to FILE")
    d.add_argument("--seed", type=int, default=None, help="seed (default: the config's seed)")
    d.set_defaults(func=run_describe)

    c = sub.add_parser("convert", help="ISIC 2017/2018/2019 or Derm7pt ground truth -> MBIT JSON + CSV")
    c.add_argument("format", choices=["isic2017", "isic2018", "isic2019", "derm7pt"], help="the ground truth's dataset")
    c.add_argument("input", help="the ground-truth CSV (ISIC) or JSON list (Derm7pt)")
    c.add_argument("--root", default=".", help="image folder the paths are relative to (default: .)")
    c.add_argument("--out", required=True, help="output MBIT JSON path")
    c.add_argument("--csv", default=None, help="also write a plain CSV (image_id,path,label,class_name,group)")
    c.add_argument("--extension", default=".jpg", help="image file extension for ISIC ids (default: .jpg)")
    c.add_argument("--no-check", action="store_true", help="do not open images (no size fields)")
    c.add_argument("--small", metavar="DIR", default=None, help="also write small JPEG copies (quality 95) of the images into DIR and "
                   "point the JSON there, as MBIT's converters do (ISIC 2017 --small: short side 450)")
    c.add_argument("--short-side", type=int, default=450, help="with --small: the short side in pixels (default: 450)")
    c.add_argument("--remove-borders", action="store_true", help="with --small: MBIT's ISIC 2019 resize tool instead: centre square, "
                   "dark borders and corners removed, square again, resized to --short-side")
    c.set_defaults(func=run_convert)

    x = sub.add_parser("extract-frames", help="videos -> OUT_DIR/<video>/<clip>/000000.jpg ... (clip sources; needs longtail[video])")
    x.add_argument("video_dir", metavar="VIDEO_DIR", help="folder of video files (searched recursively), e.g. EGTEA's cropped_clips")
    x.add_argument("out_dir", metavar="OUT_DIR", help="frame root to write (data.source.root of a clip source)")
    x.add_argument("--every", type=int, default=1, help="keep every N-th frame (default: 1, every frame, as EGTEA's original)")
    x.add_argument("--short-side", type=int, default=None, help="resize frames so the short side is this many pixels (default: native)")
    x.add_argument("--quality", type=int, default=95, help="JPEG quality (default: 95)")
    x.add_argument("--overwrite", action="store_true", help="re-extract clips whose folder exists (default: skip them)")
    x.set_defaults(func=run_extract_frames)


def _data_config(path: str, overrides: list[str]) -> tuple[Any, int, Any]:
    """Load only the ``data:`` and ``model:`` sections (other sections may name components not installed here)."""
    from ..core.config import apply_overrides, load_raw, validate
    from ..core.registry import DATASETS, TRANSFORMS
    from ..core.schema import DataConfig

    raw = apply_overrides(load_raw(path), overrides)
    if "data" not in raw:
        raise ConfigError(f"{path}: no data: section; add one (see configs/ham10000/data_ham10000.yaml)")
    cfg = validate({"data": raw["data"], "seed": raw.get("seed", 0), "model": raw.get("model") or {}}, path)
    data: DataConfig = cfg.data
    DATASETS.get(data.source.name)
    for where, entries in (("preprocess", data.preprocess), ("train_transforms", data.train_transforms),
                           ("eval_transforms", data.eval_transforms)):
        for i, t in enumerate(entries):
            try:
                TRANSFORMS.check_kwargs(t.name, t.kwargs, where=f"data.{where}.{i}")
            except ConfigError as e:
                raise ConfigError(f"{path}: {e}") from None
    return data, cfg.seed, cfg.model


def run_describe(args: argparse.Namespace) -> int:
    from .. import rundir
    from ..data import build_data, describe, plot_class_histogram
    from ..models import data_for_model

    stem = Path(args.config).stem
    plot = Path(args.plot) if args.plot else (Path(args.out) / f"{stem}_classes.png" if args.out else None)
    summary = Path(args.out) / f"{stem}_describe.txt" if args.out else None
    for path, example in ((summary, f"{stem}_describe.txt"), (plot, f"{stem}_classes.png")):  # before any work: no folder, no file a run owns
        if path is not None:
            rundir.check_output(path, "data", example)
    data, seed, model = _data_config(args.config, list(args.overrides or []))
    data, spec = data_for_model(data, model)  # `image_size: model` / `normalize: model` come from the backbone
    stats = (spec.mean, spec.std) if spec is not None else None
    bundle = build_data(data, seed=args.seed if args.seed is not None else seed, model_stats=stats)
    text = describe(bundle)
    print(text)
    if summary is not None:
        rundir.atomic_write_bytes(summary, (text + "\n").encode())
        print(f"summary: {summary}")
    if plot is not None:
        print(f"class histogram: {plot_class_histogram(bundle, plot, write=rundir.atomic_write_bytes)}")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from .. import rundir
    from ..data.converters import CONVERTERS, write_outputs

    for path, example in ((args.out, f"{args.format}.json"), (args.csv, f"{args.format}.csv")):  # before any work: no folder, no file a run owns
        if path is not None:
            rundir.check_output(path, "data", example)
    if args.small:
        rundir.check_output_folder(args.small, "data", "small")
    fn = CONVERTERS[args.format]
    conv = fn(args.input) if args.format == "derm7pt" else fn(args.input, extension=args.extension)
    root = args.root
    if args.remove_borders and not args.small:
        raise ConfigError("--remove-borders writes new images; give the folder for them with --small DIR")
    if args.small:
        from ..data.shrink import shrink_images

        conv = shrink_images(conv, args.root, args.small, args.short_side, args.remove_borders)
        root = args.small
        print(f"wrote {len(conv.records)} small images to {args.small}")
    write_outputs(conv, root, args.out, args.csv, check_images=not args.no_check, write=rundir.atomic_write_bytes)
    labelled = sum(r.label is not None for r in conv.records)
    print(f"wrote {args.out}: {len(conv.records)} images ({labelled} labelled), {conv.num_classes} classes "
          f"[{', '.join(conv.class_names)}]" + (f"; {args.csv}" if args.csv else ""))
    return 0


def run_extract_frames(args: argparse.Namespace) -> int:
    from .. import rundir
    from ..data.extract import extract_frames

    rundir.check_output_folder(args.out_dir, "data", "frames")  # before any work: not a folder a run owns
    summary = extract_frames(args.video_dir, args.out_dir, every=args.every, short_side=args.short_side,
                             quality=args.quality, overwrite=args.overwrite)
    print(f"wrote {summary.clips} clips ({summary.frames} frames) under {args.out_dir}"
          + (f"; {summary.skipped_existing} clips already there (--overwrite re-extracts them)" if summary.skipped_existing else ""))
    return 0
