"""`longtail` command line: a thin layer over :mod:`longtail.api`.

Every failure ends in :func:`main` as one line on stderr and an exit status, never a traceback:

- 2: a problem the user can fix (a :class:`~longtail.core.errors.LongtailError`): ``error: <what and the fix>``;
- 1: anything else (a bug, or an input longtail does not check): ``error: unexpected <type>: <its first line>; ...``,
  with a hint of its own for running out of memory and for too deep a recursion;
- 128 + N: a stop on signal N (130 Ctrl-C, 143 SIGTERM), worded for what the command leaves on disk; 141
  (SIGPIPE's) and nothing printed when the reader of stdout went away (``longtail list | head``).

``longtail --debug ...`` (the flag also works after the sub-command) or ``LONGTAIL_DEBUG=1`` lets the
errors of statuses 1 and 2 propagate with their traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
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
    print(format_table(res[split], res["class_names"], intervals=res.get("intervals"), split=split))
    if "spbl" in res:
        from ..metrics import spbl_tables, text_table

        print(f"\nSPBL metric table ({split}, final classifier over {res['spbl']['paces']} paces):")
        print("\n\n".join(text_table(h, r) for h, r in spbl_tables(res[split])))
    if "test_posthoc" in res:
        chosen = ", ".join(f"{k} tau={v['tau']}" for k, v in res["posthoc"].items())
        print(f"\nwith post-hoc correction chosen on validation ({chosen}):")
        print(format_table(res["test_posthoc"], res["class_names"], per_class=False, intervals=res.get("intervals"), split="test_posthoc"))
    if (res.get("intervals") or {}).get("settings"):
        from ..metrics.tables import interval_note

        print(f"\n{interval_note(res['intervals']['settings'])}")
    print(f"\nrun directory: {result.run_dir}")
    report = Path(result.run_dir) / "report.html"
    if report.is_file():
        print(f"report: {report}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .. import api
    from ..metrics import format_table
    from ..metrics.tables import interval_note
    from ..training.loading import read_data_meta

    if args.test_set:
        return _eval_shifted(args)
    if args.adapt or args.prior_source or args.adapt_images != "test":
        raise LongtailError("--adapt, --adapt-images and --prior-source score the shifted test sets of --test-set; add --test-set "
                            "(e.g. --test-set forward50)")
    result = api.evaluate(args.run_dir, split=args.split, checkpoint=args.checkpoint)
    names = read_data_meta(args.run_dir)["class_names"]
    intervals = result.get("intervals")
    print(format_table(result, names, intervals=intervals, split=args.split))
    if "posthoc" in result:
        print("\nwith the post-hoc correction stored in the run:")
        print(format_table(result["posthoc"], names, per_class=False, intervals=intervals, split=f"{args.split}_posthoc"))
    if intervals and "settings" in intervals:
        print(f"\n{interval_note(intervals['settings'])}")
    return 0


def _eval_shifted(args: argparse.Namespace) -> int:
    """``eval --test-set``: the test-agnostic protocol (inference/test_agnostic.py), one line per test set and adaptation."""
    from ..inference.test_agnostic import Shift, evaluate_shifted

    if args.split != "test" or args.checkpoint != "best":
        raise LongtailError("--test-set draws its test sets from the test split and scores the best checkpoint; drop --split and --checkpoint")
    shifts = [Shift.parse(name) for name in args.test_set]
    rows = evaluate_shifted(args.run_dir, shifts, args.adapt or ["none"], prior_source=args.prior_source or "train",
                            adapt_images=args.adapt_images)
    print(f"{'test set':<12} {'images':>6}  {'adaptation':<22} {'accuracy':>8} {'bal. acc.':>9} {'macro F1':>8}  "
          "expert weights | each expert alone: view agreement | accuracy")
    for r in rows:
        weights = " ".join(f"{w:.2f}" for w in r.get("expert_weights", []))
        alone = " | ".join(" ".join(f"{a:.3f}" for a in r[key]) for key in ("expert_agreement", "expert_accuracy") if key in r)
        print(f"{r['test_set']:<12} {r['images']:>6}  {r['adaptation']:<22} {r['accuracy']:>8.4f} {r['balanced_accuracy']:>9.4f} {r['macro_f1']:>8.4f}  "
              f"{weights}{' | ' + alone if alone else ''}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .. import api

    images, overrides = _split_overrides(args.images)
    if not images:
        raise LongtailError("predict needs at least one image file or folder besides the KEY=VALUE overrides")
    rows = api.predict(args.run_dir, images, out=args.out, overrides=overrides, top_k=args.top_k,
                       submission=args.format, rule_051=not args.no_rule_051, explain=args.explain, metadata=args.metadata)
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
    "card": ("longtail.evaluation.card", "write a run's model card (Markdown with the Hugging Face header)"),
    "serve": ("longtail.serving.app", "serve a run over HTTP: POST /predict, a web page, /health, /model"),
}


#: after "interrupted; ", what a Ctrl-C leaves, by command: only train resumes, a grid is rerun, the rest write atomically
INTERRUPT_ADVICE = {
    "train": "finished epochs are saved in checkpoints/last.pt: continue with `longtail train --resume RUN_DIR` (a new run that had none was removed)",
    "bench": "finished cells are kept, rerun the same bench command to continue",
    **dict.fromkeys(("eval", "predict", "report", "export"), "nothing in the run directory was changed (rerun the command)"),
}
#: the advice for the other commands (list, config show, compare, data)
OTHER_INTERRUPT_ADVICE = "rerun the command"


def build_parser(command: str | None = "*") -> argparse.ArgumentParser:
    """The CLI parser; plugin commands get their full parser only for ``command`` ('*': all of them)."""
    from .. import __version__
    from ..core.registry import ALL

    parser = argparse.ArgumentParser(prog="longtail", description="Long-tailed image classification: train, evaluate, predict, benchmark.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true", help="let an error propagate with its traceback instead of its one line "
                        "(also accepted after the sub-command; or set LONGTAIL_DEBUG=1)")
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
    p.add_argument("--test-set", action="append", metavar="NAME", help="score test sets drawn from the run's test split with another class prior "
                   "(SADE's test-agnostic protocol): uniform, forward<ratio> or backward<ratio>, e.g. forward50; repeat for several")
    p.add_argument("--adapt", action="append", choices=["none", "target_prior", "test_time_aggregation"],
                   help="with --test-set: none (the run as it ships, default), target_prior (moved to each test set's known prior), "
                        "test_time_aggregation (SADE's expert weights learned on the test images, a multi-expert run); repeat for several")
    p.add_argument("--adapt-images", choices=["test", "train_pool"], default="test",
                   help="with --adapt test_time_aggregation: the unlabelled images it learns on, test (each test set's own, default) or "
                        "train_pool (a set of the same prior drawn from the source's training split, the official CIFAR script's form)")
    p.add_argument("--prior-source", choices=["train", "uniform"], help="with --adapt target_prior and no logit adjustment in the run: the prior "
                   "its logits carry, train (a CE model, default) or uniform (balanced softmax, LADE)")
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
    p.add_argument("--explain", metavar="OUT_DIR", help="also write a Grad-CAM overlay of each image's predicted class to OUT_DIR/<name>.png "
                   "(the layer: eval.cam_layer, default the backbone's last conv block; needs pip install 'longtail[explain]')")
    p.add_argument("--metadata", metavar="FILE.csv", help="for a run trained with model.metadata: a CSV of those columns, one row per image, "
                   "keyed by image id or file name (column image_id, image, id, file, filename or path)")

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
    extra = [a for a in extra if a != "--debug"]  # the global flag after the sub-command: main() reads it from argv
    stray = [a for a in extra if "=" in a and not a.startswith("-")]
    target = next((name for name in ("overrides", "images") if hasattr(args, name)), None)
    if stray and target is not None:
        setattr(args, target, [*(getattr(args, target) or []), *stray])
        extra = [a for a in extra if a not in stray]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """The `longtail` command: run it, and turn whatever stops it into one line and an exit status (module docstring)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command(argv)
    try:
        return _run(argv, command)
    except BaseException as e:  # the boundary: SystemExit (argparse) goes on, the rest is worded below
        return _failed(e, command, debug="--debug" in argv or os.environ.get("LONGTAIL_DEBUG", "") not in ("", "0"))


def _run(argv: list[str], command: str | None) -> int:
    parser = build_parser(command)
    args = _parse(parser, argv)
    if args.verbose:
        logging.getLogger("longtail").setLevel(logging.DEBUG)
    func: Callable[[argparse.Namespace], int] = args.func
    with wording.cli():  # messages name CLI flags (--overwrite), not the API's keywords
        status = func(args)
    sys.stdout.flush()  # a reader that left (`longtail list | head`) shows here, not in Python's exit
    return status


def _failed(e: BaseException, command: str | None, debug: bool) -> int:
    """The exit status of a command that stopped on ``e``, after its one line; with ``debug`` an error propagates instead."""
    if isinstance(e, SystemExit):
        raise e
    if isinstance(e, BrokenPipeError):
        return _reader_gone()
    if isinstance(e, Interrupted):  # SIGTERM / SIGINT: a safe stop, exit status as if killed by the signal
        return _say(_stopped(e, command), 128 + e.signum)
    if isinstance(e, KeyboardInterrupt):
        return _say(f"\nerror: interrupted; {INTERRUPT_ADVICE.get(command or '', OTHER_INTERRUPT_ADVICE)}", 128 + signal.SIGINT)
    if debug:
        raise e
    if isinstance(e, LongtailError):
        return _say(f"error: {_rank()}{e}", 2)
    return _say(f"error: {_rank()}{unexpected(e)}", 1)


def _say(line: str, status: int) -> int:
    print(line, file=sys.stderr)
    return status


def _rank() -> str:
    """``rank R: `` in a torchrun worker, so that the failed process is named."""
    return f"rank {os.environ['RANK']}: " if "RANK" in os.environ and "WORLD_SIZE" in os.environ else ""


def _stopped(e: Interrupted, command: str | None) -> str:
    """A safe stop on a signal: training's own message says how to resume the run; a grid is continued by rerunning it."""
    if command == "bench":
        return f"error: stopped by {signal.Signals(e.signum).name}; {INTERRUPT_ADVICE['bench']}"
    return f"error: {e}"


def _reader_gone() -> int:
    """`longtail list | head`: the reader of stdout left. Send what is still buffered to /dev/null (Python's exit
    would fail writing it) and exit quietly with the status of a process SIGPIPE ended, as the shell expects."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file descriptor (captured)
        pass
    return 128 + signal.SIGPIPE


def unexpected(e: BaseException) -> str:
    """The line for an exception no check of longtail words: its type and first line, and what to do next."""
    first = next((line.strip() for line in str(e).splitlines() if line.strip()), "")
    what = type(e).__name__ + (f": {first[:300]}" if first else "")
    if isinstance(e, MemoryError) or any(c.__name__ == "OutOfMemoryError" for c in type(e).__mro__):  # torch's CUDA / MPS one too
        return (f"out of memory ({what}); lower data.batch_size and data.eval_batch_size (data.cache: mmap keeps a large set on disk), "
                "or free memory, and run again; rerun with --debug for the traceback")
    if isinstance(e, RecursionError):
        return (f"unexpected {what}: something is nested too deeply, such as a YAML file whose anchors refer to themselves; "
                "simplify it, or rerun with --debug for the traceback and report it")
    return f"unexpected {what}; this is a bug in longtail or an input it does not check: rerun with --debug for the traceback and report it"


if __name__ == "__main__":
    sys.exit(main())
