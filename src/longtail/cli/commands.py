"""`longtail` command line: a thin layer over :mod:`longtail.api`.

Problems the user can fix are printed as one line (``error: ...``) with exit code 2, never a
traceback; set ``LONGTAIL_DEBUG=1`` to see the traceback anyway.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ..core import wording
from ..core.errors import LongtailError
from ..engine.interrupt import Interrupted


def _add_config_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("-c", "--config", required=required, help="YAML recipe (see configs/)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. train.epochs=3 loss.name=focal loss.gamma=2")


def cmd_train(args: argparse.Namespace) -> int:
    from .. import api
    from ..metrics import format_table

    if args.resume is None and args.config is None:
        raise LongtailError("train needs -c CONFIG (or --resume RUN_DIR to continue a run)")
    result = api.train(args.config, args.overrides, overwrite=args.overwrite, resume=args.resume, stop_after=args.stop_after)
    if int(os.environ.get("RANK", "0")) != 0:  # a torchrun worker other than rank 0: rank 0 prints the results
        return 0
    if not result.finished:
        print(f"stopped early; continue with: longtail train --resume {result.run_dir}")
        return 0
    res = result.results or {}
    split = "test" if "test" in res else "val"
    print(f"\n{split} split, best checkpoint (epoch {res.get('best_epoch')}, chosen on validation {res.get('select_metric')}):")
    print(format_table(res[split], res["class_names"]))
    if "spbl" in res:
        from ..metrics import spbl_tables, text_table

        print(f"\nSPBL metric table ({split}, final classifier over {res['spbl']['paces']} paces):")
        print("\n\n".join(text_table(h, r) for h, r in spbl_tables(res[split])))
    if "test_posthoc" in res:
        chosen = ", ".join(f"{k} tau={v['tau']}" for k, v in res["posthoc"].items())
        print(f"\nwith post-hoc correction chosen on validation ({chosen}):")
        print(format_table(res["test_posthoc"], res["class_names"], per_class=False))
    print(f"\nrun directory: {result.run_dir}")
    report = Path(result.run_dir) / "report.html"
    if report.is_file():
        print(f"report: {report}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .. import api, rundir
    from ..metrics import format_table
    from ..training.loading import DATA_META

    result = api.evaluate(args.run_dir, split=args.split, checkpoint=args.checkpoint)
    names = rundir.read_json(Path(args.run_dir) / DATA_META)["class_names"]
    print(format_table(result, names))
    if "posthoc" in result:
        print("\nwith the post-hoc correction stored in the run:")
        print(format_table(result["posthoc"], names, per_class=False))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .. import api

    images, overrides = _split_overrides(args.images)
    if not images:
        raise LongtailError("predict needs at least one image file or folder besides the KEY=VALUE overrides")
    rows = api.predict(args.run_dir, images, out=args.out, overrides=overrides, top_k=args.top_k,
                       submission=args.format, rule_051=not args.no_rule_051)
    what = f"an {args.format} submission" if args.format else "predictions"
    print(f"wrote {what} for {len(rows)} images to {args.out}")
    return 0


def _split_overrides(items: list[str]) -> tuple[list[str], list[str]]:
    """Positional ``KEY=VALUE`` (a dotted key, not an existing path) are overrides; the rest are inputs."""
    import re

    key = re.compile(r"^[A-Za-z_][\w.]*=")
    overrides = [a for a in items if key.match(a) and not os.path.exists(a)]
    return [a for a in items if a not in overrides], overrides


def cmd_config_show(args: argparse.Namespace) -> int:
    from ..catalog.check import load_config
    from ..core.config import dump

    print(dump(load_config(args.config, args.overrides)), end="")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from ..catalog.index import load

    index = load()  # the stored index: listing components imports none of them (no torch)
    kinds = [args.kind] if args.kind else sorted(index)
    for kind in kinds:
        entries = index[kind]
        if len(kinds) > 1:
            print(f"{kind}:")
        width = max((len(n) for n in entries), default=0)
        for name, desc in entries.items():
            print(f"  {name.ljust(width)}  {desc}")
    return 0


#: sub-commands that other modules add: command -> (module, its help line). A module is imported
#: only when its command runs, so `longtail --help` imports no torch; a test keeps the help lines
#: equal to the modules' own.
PLUGIN_COMMANDS = {
    "data": ("longtail.cli.data", "inspect and convert datasets"),
    "report": ("longtail.evaluation.report", "write report.html + report.md of a run directory"),
    "compare": ("longtail.evaluation.report", "compare runs side by side"),
    "bench": ("longtail.bench.grid", "run a methods x seeds benchmark grid"),
    "export": ("longtail.inference.export", "export a run's best model (post-hoc correction folded in) to ONNX or TorchScript"),
}


def build_parser(command: str | None = "*") -> argparse.ArgumentParser:
    """The CLI parser; plugin commands get their full parser only for ``command`` ('*': all of them)."""
    from .. import __version__
    from ..core.registry import ALL

    parser = argparse.ArgumentParser(prog="longtail", description="Long-tailed image classification: train, evaluate, predict, benchmark.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"longtail {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from a recipe")
    _add_config_args(p, required=False)
    p.add_argument("--overwrite", action="store_true", help="replace the run directory output_dir/name (default: a taken name gets the next free one, name-2, name-3, ...)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--stop-after", type=int, metavar="EPOCHS", help="stop after this many epochs in total (resume later)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a run's best (or last) checkpoint",
                       description="Recompute a checkpoint's metrics on a split from the data (and with the run's post-hoc correction); "
                                   "prints the per-class table and the summary metrics and saves the logits to RUN_DIR/predictions/.")
    p.add_argument("run_dir", help="a run directory made by `longtail train`")
    p.add_argument("--split", choices=["test", "val"], default="test", help="the split to evaluate (default: test)")
    # checked by api.evaluate, so a bad value is the usual one-line error
    p.add_argument("--checkpoint", default="best", metavar="best|last", help="best: selected on validation (default); last: the final epoch")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="class probabilities for images with a trained run")
    p.add_argument("run_dir", help="a run directory made by `longtail train`")
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER|KEY=VALUE", help="image files or folders (for a clip run, clip folders of frames or folders holding them), "
                   "and dotted overrides for reading them, e.g. data.on_bad_image=skip")
    p.add_argument("--out", default="predictions.csv", help="CSV: image, label, probability, the top-k labels and probabilities, "
                   "warning (input far from the training data's channels or size), one probability column per class")
    p.add_argument("--top-k", type=int, default=3, metavar="K", help="how many most probable labels to list (default 3)")
    p.add_argument("--format", choices=["isic2018", "isic2019"], default=None,
                   help="write the ISIC challenge's submission CSV instead: image,<challenge classes>[,UNK] (2019: UNK 0, "
                        "or 1 - max sigmoid re-softmaxed when the run has eval.unk_class: sigmoid); a row's top value <= 0.5 becomes 0.51")
    p.add_argument("--no-rule-051", action="store_true", help="with --format: leave rows whose top value is <= 0.5 as they are")

    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("config", help="config tools")
    csub = p.add_subparsers(dest="config_command", required=True)
    show = csub.add_parser("show", help="print the resolved config")
    _add_config_args(show)
    show.set_defaults(func=cmd_config_show)

    p = sub.add_parser("list", help="list registered components")
    p.add_argument("kind", nargs="?", choices=sorted(ALL), help="one kind of component (default: every kind)")
    p.set_defaults(func=cmd_list)

    for module in _plugin_modules(command):
        module.add_commands(sub)
    loaded = set(sub.choices)
    for name, (_, text) in PLUGIN_COMMANDS.items():
        if name not in loaded:  # listed in --help; its own parser loads when it runs
            sub.add_parser(name, help=text, add_help=False)
    return parser


def _plugin_modules(command: str | None) -> list:
    """The modules that add the sub-commands ``command`` needs ('*': all; None: none)."""
    import importlib

    names = {m for c, (m, _) in PLUGIN_COMMANDS.items() if command in ("*", c)}
    return [importlib.import_module(m) for m in sorted(names)]


def _command(argv: Sequence[str]) -> str | None:
    """The sub-command named in ``argv`` (the first word that is not an option), if any."""
    return next((a for a in argv if not a.startswith("-")), None)


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``, taking ``KEY=VALUE`` words after a flag as overrides too.

    argparse ends a positional list at the first flag, so ``-c C a=1 --overwrite b=2`` would leave
    ``b=2`` unrecognised; it belongs with ``a=1`` (or with predict's inputs, which hold the overrides)."""
    args, extra = parser.parse_known_args(argv)
    stray = [a for a in extra if "=" in a and not a.startswith("-")]
    target = next((name for name in ("overrides", "images") if hasattr(args, name)), None)
    if stray and target is not None:
        setattr(args, target, [*(getattr(args, target) or []), *stray])
        extra = [a for a in extra if a not in stray]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command(argv))
    args = _parse(parser, argv)
    if args.verbose:
        logging.getLogger("longtail").setLevel(logging.DEBUG)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        with wording.cli():  # messages name CLI flags (--overwrite), not the API's keywords
            return func(args)
    except Interrupted as e:  # SIGTERM / SIGINT: a safe stop, exit status as if killed by the signal
        print(f"error: {e}", file=sys.stderr)
        return 128 + e.signum
    except LongtailError as e:
        if os.environ.get("LONGTAIL_DEBUG"):
            raise
        rank = f"rank {os.environ['RANK']}: " if "RANK" in os.environ and "WORLD_SIZE" in os.environ else ""
        print(f"error: {rank}{e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; finished epochs are saved, continue with `longtail train --resume RUN_DIR`", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
