"""What README.md and docs/*.md name exists: file paths, `longtail` commands with their flags, and
config options (checked against the schema).

A doc line about a recipe, flag or key that is not there is a defect, the same as a failing test.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from pydantic import BaseModel

from longtail.cli.commands import _parse, build_parser
from longtail.core.config import model_of
from longtail.core.schema import Config

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: dotted words that look like options and are not, each with why
NOT_OPTIONS = {
    "spbl.scores": "a results.json key (docs/methods.md, SPBL calibration)",
    "spbl.calibration": "a results.json key as well as an option",
    "train.epochz": "the misspelt key of an error example (docs/reliability.md)",
    "train.txt": "a list file's name (ImageNet-LT / iNaturalist list files)",
}
PATH_PREFIXES = ("configs", "benchmarks", "examples", "docs", "tests", "src")
OPTION = re.compile(r"(?<![\w./-])((?:%s)(?:\.[A-Za-z_]\w*|\.\d+)+)(?![\w(/-])" % "|".join(sorted(Config.model_fields)))
PATH = re.compile(r"(?<![\w/.-])((?:%s)/[\w./{},*-]*[\w}*])" % "|".join(PATH_PREFIXES))
COMMAND = re.compile(r"(?:^|`|\$ )\s*(longtail [^`\n|#]*)", re.MULTILINE)


def _texts() -> list[tuple[str, str]]:
    return [(p.relative_to(ROOT).as_posix(), p.read_text()) for p in DOCS]


def option_exists(key: str) -> bool:
    """Whether ``key`` (``train.select_metric``, ``stages.1.loss``) is a config key; a component's own
    kwargs (``loss.gamma``) are the registry's business, checked when a config loads."""
    model: type[BaseModel] | None = Config
    for part in key.split("."):
        if part.isdigit():
            continue
        if model is None or model.model_config.get("extra") == "allow":
            return True
        field = model.model_fields.get(part)
        if field is None:
            return False
        model = model_of(field.annotation)
    return True


def _is_module(key: str) -> bool:
    """``data.samplers`` in prose is the module ``longtail.data.samplers``, not an option."""
    parts = key.split(".")
    for i in range(len(parts), 0, -1):
        try:
            if importlib.util.find_spec("longtail." + ".".join(parts[:i])) is not None:
                return True
        except ModuleNotFoundError:
            continue
    return False


@functools.lru_cache(maxsize=None)
def _ignored(path: str) -> bool:
    """Run outputs (``benchmarks/runs/...``) are named as where results appear, not as shipped files."""
    return subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0


def _expand(path: str) -> list[str]:
    if "{" not in path:
        return [path]
    head, rest = path.split("{", 1)
    alternatives, tail = rest.split("}", 1)
    return [p for alt in alternatives.split(",") for p in _expand(head + alt + tail)]


def test_every_option_named_in_the_docs_is_a_config_key():
    unknown = []
    for name, text in _texts():
        for m in OPTION.finditer(text):
            key = m.group(1)
            if key in NOT_OPTIONS or key.rsplit(".", 1)[-1] in {"yaml", "md", "py", "json", "csv", "npz", "pt", "jsonl", "html", "txt"}:
                continue
            if not option_exists(key) and not _is_module(key):
                unknown.append(f"{name}: {key}")
    assert unknown == []


def test_every_path_named_in_the_docs_exists():
    missing = []
    for name, text in _texts():
        for m in PATH.finditer(text):
            for path in _expand(m.group(1)):
                if "<" in path or (ROOT / path).exists() or _ignored(path):
                    continue
                if "*" in path and any(ROOT.glob(path)):  # a glob names the files it matches
                    continue
                missing.append(f"{name}: {path}")
    assert missing == []


def _commands() -> list[tuple[str, str]]:
    """(doc, command) for every full `longtail SUB ...` line; sketches with [...], {a,b} or ... are skipped."""
    subcommands = set(build_parser("*")._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    found = []
    for name, text in _texts():
        for m in COMMAND.finditer(text):
            line = m.group(1).strip()
            words = line.split()
            if len(words) < 3 or words[1] not in subcommands or any(s in line for s in ("[", "{", "...", "…")):
                continue
            found.append((name, line))
    return found


def test_the_docs_name_commands():
    assert len(_commands()) > 30
    assert len(_shell_commands()) > 10


def _subparser(words: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The (sub-)sub-command parser a command line reaches, and the words after its name."""
    parser = build_parser(words[0])
    rest = list(words)
    while rest:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None or rest[0] not in sub.choices:
            break
        parser, rest = sub.choices[rest[0]], rest[1:]
    return parser, rest


@pytest.mark.parametrize("doc,line", _commands())
def test_every_documented_command_names_real_flags_and_keys(doc, line):
    """Each `--flag` exists on the sub-command it is written after, each KEY=VALUE is a config key and
    each `-c FILE` exists (a line may mention a flag without the command's other arguments)."""
    words = shlex.split(line)[1:]
    parser, rest = _subparser(words)
    flags = {s for action in parser._actions for s in action.option_strings}
    for word in rest:
        if word.startswith("-"):
            assert word.split("=", 1)[0] in flags, f"{doc}: `{line}`: {parser.prog} has no option {word}"
        elif "=" in word and "/" not in word.split("=", 1)[0]:
            assert option_exists(word.split("=", 1)[0]), f"{doc}: `{line}` sets '{word}', which is not a config key"
    if "-c" in rest and rest.index("-c") + 1 < len(rest):
        config = rest[rest.index("-c") + 1]
        assert config.isupper() or (ROOT / config).is_file(), f"{doc}: `{line}` names a config that does not exist"


def _shell_commands() -> list[tuple[str, str]]:
    """Whole commands: the `longtail` lines of the docs' bash blocks, as a reader pastes them."""
    found = []
    for name, text in _texts():
        for block in re.findall(r"```bash\n(.*?)```", text, re.S):
            for raw in block.splitlines():
                line = raw.split("  #", 1)[0].strip()
                if line.startswith("longtail ") and not any(s in line for s in ("[", "{", "...")):
                    found.append((name, line))
    return found


@pytest.mark.parametrize("doc,line", _shell_commands())
def test_every_command_in_a_bash_block_parses(doc, line):
    words = shlex.split(line)[1:]
    if words[0] in ("--help", "--version"):
        return
    _parse(build_parser(words[0]), words)


def test_the_checks_can_fail():
    assert not option_exists("train.epochz") and option_exists("train.epochs") and option_exists("loss.gamma")
    assert option_exists("stages.1.loss") and not option_exists("eval.no_such_key")
    with pytest.raises(SystemExit):
        _parse(build_parser("train"), ["train", "-c", "x.yaml", "--no-such-flag"])
