"""`longtail --help`, `--version` and `list` start without importing torch, and say the same as the full CLI."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from longtail import __version__
from longtail.catalog import index
from longtail.cli import commands as cli

# runs the CLI as the console script does, then reports whether torch got imported
PROBE = ("import sys; from longtail.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
         "print('TORCH_IMPORTED' if 'torch' in sys.modules else 'NO_TORCH')")


@pytest.mark.parametrize("args, expected", [(["--help"], "export"), (["--version"], f"longtail {__version__}"),
                                            (["list"], "balanced_softmax"), (["list", "losses"], "ldam")])
def test_light_commands_do_not_import_torch(args, expected):
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert expected in out.stdout
    assert out.stdout.rstrip().endswith("NO_TORCH"), out.stdout[-200:]


def _helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a.help for a in sub._choices_actions}


def test_lazy_help_lines_are_the_plugin_modules_own():
    full, light = _helps(cli.build_parser("*")), _helps(cli.build_parser(None))
    assert light == full
    assert {name: text for name, (_, text) in cli.PLUGIN_COMMANDS.items()} == {n: full[n] for n in cli.PLUGIN_COMMANDS}


def test_a_plugin_command_gets_its_full_parser(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["export", "--help"])
    assert e.value.code == 0 and "--format {onnx,torchscript}" in capsys.readouterr().out


def test_stored_component_index_matches_the_registries():
    assert index.load() == index.build(), "a component was added or changed: run `python -m longtail.catalog.index`"


def _parsers(parser: argparse.ArgumentParser, path: str = "longtail"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_argument_of_every_command_has_help():
    missing = [f"{path}: {a.dest}" for path, p in _parsers(cli.build_parser("*")) for a in p._actions
               if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)) and not a.help]
    assert not missing, missing
