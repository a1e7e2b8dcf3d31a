"""Hostile config input (issue #31): duplicated keys, alias bombs, base cycles, bytes that are not UTF-8, NUL characters,
numbers out of range, run names that are no folder name, config paths that are no regular file.

Every case goes through the ``longtail`` command in-process and asserts the one-line message, exit status 2, that no run
folder appears beside the finished run, and that every file of the finished run keeps its sha256.
"""

from __future__ import annotations

import os
import threading
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import pytest
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from longtail.core.schema import Config

from .common import cli, digests, one_error, small, write_yaml

#: seconds a refused config may take at most; an alias bomb or a FIFO would hang or fill memory instead
WITHIN = 10.0


def refused(capsys, done, tmp_path: Path, *args: Any) -> str:
    """Run ``longtail ARGS`` (ending within WITHIN seconds): its single error line, after checking exit status 2, that no
    run folder was added beside the finished run and that the finished run is byte for byte unchanged."""
    run, before = done
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(out=cli(capsys, *args)), daemon=True)
    worker.start()
    worker.join(WITHIN)
    assert not worker.is_alive(), f"longtail {' '.join(map(str, args))} still runs after {WITHIN} s"
    code, err = result["out"]
    assert code == 2, err
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["done"], "nothing beside the finished run"
    assert digests(run) == before
    return one_error(err)


def config_text(tmp_path: Path, name: str, *drop: str) -> str:
    """The tiny config as YAML text, without the sections in ``drop`` (a case writes them itself)."""
    cfg = {k: v for k, v in small(tmp_path, name).items() if k not in drop}
    return yaml.safe_dump(cfg)


def write_text(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


# ------------------------------------------------------------------------------ duplicated keys
@pytest.mark.parametrize("case", ["two train sections", "lr twice in optimizer", "a key twice in a list item", "twice in a flow mapping"])
def test_a_key_written_twice_in_a_file_names_both_places(case, tmp_path, capsys, done):
    base = config_text(tmp_path, "dup", "train", "optimizer")
    n = len(base.splitlines())
    suffix, key, places = {
        "two train sections": ("train:\n  epochs: 1\n  progress: false\ntrain:\n  epochs: 2\n", "train", f"lines {n + 1} and {n + 4}"),
        "lr twice in optimizer": ("optimizer:\n  name: sgd\n  lr: 0.05\n  lr: 0.5\n", "lr", f"lines {n + 3} and {n + 4}"),
        "a key twice in a list item": ("stages:\n- epochs: 1\n  epochs: 2\n", "epochs", f"lines {n + 2} and {n + 3}"),
        "twice in a flow mapping": ("optimizer: {name: sgd, lr: 0.05, lr: 0.5}\n", "lr", f"line {n + 1}, columns 24 and 34"),
    }[case]
    path = write_text(tmp_path / "c.yaml", base + suffix)
    msg = refused(capsys, done, tmp_path, "train", "-c", path)
    assert f"{path}: key '{key}' appears twice ({places}); keep one" in msg


@pytest.mark.parametrize("override, key, columns", [("model={a: 1, a: 2}", "a", "2 and 8"), ("data.source={name: digits, name: mnist}", "name", "2 and 16")])
def test_a_key_written_twice_in_an_override_is_an_error(override, key, columns, tmp_path, capsys, done):
    path = write_yaml(tmp_path / "c.yaml", small(tmp_path, "dup"))
    msg = refused(capsys, done, tmp_path, "train", "-c", path, override)
    assert f"override '{override}': key '{key}' appears twice (line 1, columns {columns}); keep one" in msg


# ------------------------------------------------------------------------------ alias bombs, recursion, depth
def laughs(levels: int = 9) -> str:
    """The 'billion laughs': each level lists the previous one nine times (9**levels values once expanded)."""
    rows = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"] + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(rows) + "\n"


@pytest.mark.parametrize("case", ["bomb in the file", "bomb in a base file", "bomb in an override", "recursive alias", "nested 100 deep", "nested 5000 deep",
                                  "more plain values than the limit"])
def test_yaml_that_would_expand_without_bound_is_refused_at_once(case, tmp_path, capsys, done, monkeypatch):
    cfg = write_text(tmp_path / "c.yaml", config_text(tmp_path, "bomb"))
    args: list[Any] = ["train", "-c", cfg]
    where, expected = str(cfg), "YAML aliases expand to more than 100000 values (an alias bomb"
    if case == "bomb in the file":
        write_text(cfg, cfg.read_text() + laughs())
    elif case == "bomb in a base file":
        where = str(write_text(tmp_path / "bomb.yaml", laughs()))
        write_text(cfg, cfg.read_text() + "base: bomb.yaml\n")
    elif case == "bomb in an override":
        override = "model={" + laughs().replace("\n", ", ").rstrip(", ") + "}"
        args.append(override)
        where = f"override '{override[:75]}"
    elif case == "recursive alias":
        write_text(cfg, cfg.read_text() + "eval: &e {positive: [*e]}\n")
        expected = "a YAML alias refers to a value that contains it"
    elif case.startswith("nested"):
        depth = int(case.split()[1])
        write_text(cfg, cfg.read_text() + "spbl: " + "[" * depth + "]" * depth + "\n")
        expected = "the YAML nests deeper than 64 levels"
    else:  # the limit lowered so that the case stays fast; a megabyte of values would take PyYAML seconds to compose
        monkeypatch.setattr("longtail.core.config.MAX_YAML_VALUES", 500)
        write_text(cfg, cfg.read_text() + f"eval: {{positive: [{', '.join(['a'] * 500)}]}}\n")
        expected = "the YAML holds more than 500 values; a config needs far fewer"
    msg = refused(capsys, done, tmp_path, *args)
    assert msg.startswith(f"error: {where}") and expected in msg, msg


def test_a_few_anchors_and_aliases_still_load(tmp_path, capsys):
    crop = [{"name": "random_crop", "size": 8, "padding": 1}]
    cfg = small(tmp_path, "shared", data={"train_transforms": crop, "eval_transforms": crop})
    text = yaml.safe_dump(cfg)  # the same list twice: safe_dump writes an anchor and an alias
    assert "&id001" in text and "*id001" in text
    code, err = cli(capsys, "config", "show", "-c", write_text(tmp_path / "c.yaml", text))
    assert code == 0 and err == []


# ------------------------------------------------------------------------------ base chains
@pytest.mark.parametrize("case", ["its own file", "its own file as ./", "two files", "three files through a folder", "a symlink to itself"])
def test_a_base_chain_that_comes_back_is_a_cycle_naming_the_chain(case, tmp_path, capsys, done):
    a, b, c, link = (tmp_path / n for n in ("a.yaml", "b.yaml", "c.yaml", "link.yaml"))
    (tmp_path / "sub").mkdir()
    link.symlink_to(a)
    cfg = small(tmp_path, "cycle")
    bases, chain = {
        "its own file": ({a: "a.yaml"}, [a, a]),
        "its own file as ./": ({a: "./a.yaml"}, [a, a]),
        "two files": ({a: "b.yaml", b: "./a.yaml"}, [a, b, a]),
        "three files through a folder": ({a: "b.yaml", b: "c.yaml", c: "sub/../a.yaml"}, [a, b, c, tmp_path / "sub" / ".." / "a.yaml"]),
        "a symlink to itself": ({a: "link.yaml"}, [a, link]),
    }[case]
    for path, base in bases.items():
        write_yaml(path, {**cfg, "base": base})
    msg = refused(capsys, done, tmp_path, "train", "-c", a)
    assert f"{a}: base chain {' -> '.join(map(str, chain))} is a cycle; remove one base" in msg


@pytest.mark.parametrize("base, expected", [
    ("[a.yaml, b.yaml]", "base must be the path of one YAML file, not ['a.yaml', 'b.yaml']"), ("''", "base must be the path of one YAML file, not ''"),
    ('"ce\\0.yaml"', "base 'ce\\x00.yaml' holds a NUL character (\\x00); remove it"),
])
def test_a_base_that_is_not_one_file_name_is_refused(base, expected, tmp_path, capsys, done):
    path = write_text(tmp_path / "c.yaml", config_text(tmp_path, "based") + f"base: {base}\n")
    assert f"{path}: {expected}" in refused(capsys, done, tmp_path, "train", "-c", path)


# ------------------------------------------------------------------------------ bytes and characters
@pytest.mark.parametrize("case", ["latin-1 byte in a value", "utf-16 file", "cut multi-byte character at the end"])
def test_bytes_that_are_not_utf8_name_the_line_column_and_byte(case, tmp_path, capsys, done):
    text = config_text(tmp_path, "bytes")
    data, (line, column, offset, byte) = {
        "latin-1 byte in a value": (text.encode() + b"name: caf\xe9\n", (len(text.splitlines()) + 1, 10, len(text.encode()) + 9, "0xe9")),
        "utf-16 file": (text.encode("utf-16"), (1, 1, 0, "0xff")),
        "cut multi-byte character at the end": (text.encode() + b"name: caf\xc3", (len(text.splitlines()) + 1, 10, len(text.encode()) + 9, "0xc3")),
    }[case]
    path = write_text(tmp_path / "c.yaml", data)
    msg = refused(capsys, done, tmp_path, "train", "-c", path)
    assert f"{path}: line {line}, column {column} (byte {offset}, {byte}) is not UTF-8 text; save the file as UTF-8" in msg


def test_utf8_with_a_byte_order_mark_is_read(tmp_path, capsys):
    path = write_text(tmp_path / "c.yaml", "\ufeff" + config_text(tmp_path, "bom"))
    code, err = cli(capsys, "config", "show", "-c", path)
    assert code == 0 and err == []


@pytest.mark.parametrize("case", ["NUL byte in the file", "bell byte in the file", "\\0 escape in a value", "\\0 escape in a key", "NUL in an override",
                                  "\\0 escape in an override"])
def test_a_nul_or_control_character_names_the_place(case, tmp_path, capsys, done):
    text = config_text(tmp_path, "nul", "name")
    n = len(text.splitlines())
    path = tmp_path / "c.yaml"
    args: list[Any] = ["train", "-c", path]
    expected = {
        "NUL byte in the file": (text + "name: a\x00b\n", f"{path}: line {n + 1}, column 8 holds the character U+0000, which YAML does not allow"),
        "bell byte in the file": (text + "name: a\x07b\n", f"{path}: line {n + 1}, column 8 holds the character U+0007, which YAML does not allow"),
        "\\0 escape in a value": (text + 'name: "a\\0b"\n', f"{path}: the value of 'name' holds a NUL character (\\x00); remove it"),
        "\\0 escape in a key": (text + 'eval: {"posi\\0tive": [a]}\n', f"{path}: the key 'eval.posi<NUL>tive' holds a NUL character"),
        "NUL in an override": (text, "override 'name=a\\x00b' holds a NUL character (\\x00); remove it"),
        "\\0 escape in an override": (text, f"{path}: the value of 'name' holds a NUL character"),
    }
    content, part = expected[case]
    write_text(path, content)
    if "override" in case:
        args.append("name=a\x00b" if case == "NUL in an override" else 'name="a\\0b"')
    assert part in refused(capsys, done, tmp_path, *args)


# ------------------------------------------------------------------------------ numbers
@pytest.mark.parametrize("override, key, problem", [
    ("data.image_size=0", "data.image_size", "greater than or equal to 1"),
    ("data.image_size=-8", "data.image_size", "greater than or equal to 1"),
    ("data.image_size=100000", "data.image_size", "less than or equal to 4096"),
    ("data.image_size=[8, 5000]", "data.image_size.1", "less than or equal to 4096"),
    ("seed=-1", "seed", "greater than or equal to 0"),
    (f"seed={2**80}", "seed", "less than or equal to 4294967295"),
    (f"data.split.seed={2**32}", "data.split.seed", "less than or equal to 4294967295"),
    ("train.threads=100000", "train.threads", "less than or equal to 1024"),
    ("train.epochs=1000000", "train.epochs", "less than or equal to 100000"),
    ("data.batch_size=0", "data.batch_size", "greater than or equal to 1"),
    (f"data.eval_batch_size={2**21}", "data.eval_batch_size", "less than or equal to 1048576"),
    ("optimizer.lr=0", "optimizer.lr", "greater than 0"),
    ("optimizer.lr=.inf", "optimizer.lr", "a finite number"),
    ("optimizer.lr=.nan", "optimizer.lr", "a finite number"),
    ("optimizer.momentum=1", "optimizer.momentum", "less than 1"),
    ("optimizer.betas=[0.9, 1.5]", "optimizer.betas.1", "less than 1"),
    ("optimizer.lr_mult={backbone: -0.1}", "optimizer.lr_mult.backbone", "greater than or equal to 0"),
    ("model.dropout=1", "model.dropout", "less than 1"),
    ("schedule.gamma=0", "schedule.gamma", "greater than 0"),
    ("schedule.milestones=[3, -1]", "schedule.milestones.1", "greater than or equal to 0"),
    ("posthoc.grid=[0, .inf]", "posthoc.grid.1", "a finite number"),
    ("posthoc.grid=[0, 50]", "posthoc.grid.1", "less than or equal to 10"),
    ("data.normalize={mean: [123.7], std: [58.4]}", "data.normalize.mean.0", "less than or equal to 1"),
    ("eval.shot_thresholds=[100, -1]", "eval.shot_thresholds.1", "greater than or equal to 0"),
    ("spbl={add_ratios: [0.5, 1.5]}", "spbl.add_ratios.1", "less than or equal to 1"),
    ("spbl={svm_gamma: -1}", "spbl.svm_gamma", "greater than 0"),
])
def test_a_number_out_of_range_names_the_key_and_the_range(override, key, problem, tmp_path, capsys, done):
    path = write_yaml(tmp_path / "c.yaml", small(tmp_path, "numbers"))
    msg = refused(capsys, done, tmp_path, "train", "-c", path, override)
    assert f"{path}: bad value for '{key}' (" in msg and f"Input should be {problem}" in msg, msg


def numeric_leaves(model: type[BaseModel], where: str, seen: set[type]) -> typing.Iterator[tuple[str, type, list[Any]]]:
    """Every int / float a config section holds (through Optional, unions, lists, tuples, dict values and sub-sections), with the
    constraints that apply to it."""
    seen.add(model)
    for name, field in model.model_fields.items():
        yield from leaves(field.annotation, f"{where}{name}", list(field.metadata), seen)


def leaves(annotation: Any, where: str, constraints: list[Any], seen: set[type]) -> typing.Iterator[tuple[str, type, list[Any]]]:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        extra = [m for info in args[1:] for m in (info.metadata if isinstance(info, FieldInfo) else [info])]
        yield from leaves(args[0], where, constraints + extra, seen)
    elif origin in (Union, types.UnionType):  # Field(ge=...) on an Optional applies to its member
        for arg in args:
            yield from leaves(arg, where, constraints, seen)
    elif origin in (list, tuple, dict):  # the items' own constraints, not the container's
        for arg in (args[1:] if origin is dict else args):
            yield from leaves(arg, f"{where}[]", [], seen)
    elif annotation in (int, float):
        yield where, annotation, constraints
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel) and annotation not in seen:
        yield from numeric_leaves(annotation, f"{where}.", seen)
    else:  # a type this walk does not know (Decimal, datetime, ...) must be taught to it, not skipped
        assert origin is Literal or annotation in (str, bool, type(None)) or (isinstance(annotation, type) and issubclass(annotation, BaseModel)), (where, annotation)


#: numeric options that are meant to have no bound, with the reason (none today)
UNBOUNDED: dict[str, str] = {}


def test_every_number_in_the_schema_has_a_range_and_no_section_takes_inf_or_nan():
    seen: set[type] = set()
    found = list(numeric_leaves(Config, "", seen))
    assert len(found) > 50 and {"data.image_size", "optimizer.betas[]", "posthoc.grid[]", "optimizer.lr_mult[]"} <= {w for w, _, _ in found}
    lower, upper = (annotated_types.Ge, annotated_types.Gt), (annotated_types.Le, annotated_types.Lt)
    unbounded = [w for w, _, c in found if not any(isinstance(m, lower + upper) for m in c) and w not in UNBOUNDED]
    assert unbounded == [], f"give these numbers a range in core/schema.py (Field(ge=..., le=...)): {unbounded}"
    # an int past int64 overflows numpy and torch; a float has inf refused instead (allow_inf_nan below)
    no_cap = [w for w, kind, c in found if kind is int and not any(isinstance(m, upper) for m in c) and w not in UNBOUNDED]
    assert no_cap == [], f"give these integers an upper bound: {no_cap}"
    takes_inf = [m.__name__ for m in seen if m.model_config.get("allow_inf_nan", True) and any(kind is float for _, kind, _ in numeric_leaves(m, "", set()))]
    assert takes_inf == [], f"set allow_inf_nan=False on {takes_inf} (derive them from Strict)"


def test_the_edges_of_the_ranges_are_accepted(tmp_path, capsys):
    cfg = write_yaml(tmp_path / "c.yaml", {"data": {"source": {"name": "digits"}}})
    for override in ["seed=4294967295", "data.image_size=[4096, 1]", "train.threads=1024", "optimizer.momentum=0", "posthoc.grid=[0, 10]", "name=" + "x" * 200]:
        code, err = cli(capsys, "config", "show", "-c", cfg, override)
        assert code == 0 and err == [], (override, err)


# ------------------------------------------------------------------------------ run names
@pytest.mark.parametrize("name, problem", [
    ("a/b", "contains '/'"), (".hidden", "starts with '.'"), ("..", "starts with '.'"), ("", "is empty"),
    ("a\tb", "control or invisible character '\\t'"), ("a\nb", "control or invisible character '\\n'"), ("a\x1bb", "'\\x1b'"),
    ("a\u202eb", "'\\u202e'"), ("x" * 201, "is 201 bytes long"), ("\u00e9" * 101, "is 202 bytes long"),
])
def test_the_run_name_must_be_a_plain_folder_name(name, problem, tmp_path, capsys, done):
    path = write_yaml(tmp_path / "c.yaml", small(tmp_path, name))
    msg = refused(capsys, done, tmp_path, "train", "-c", path)
    assert f"{path}: bad value for 'name' (" in msg and problem in msg and "the name must be a plain folder name" in msg, msg


# ------------------------------------------------------------------------------ the config path itself
@pytest.mark.parametrize("case", ["a folder", "a FIFO", "/dev/zero", "over 1 MiB", "a base that is a folder"])
def test_a_config_path_that_is_not_a_regular_file_is_refused_without_blocking(case, tmp_path, capsys, done):
    path = tmp_path / "c.yaml"
    if case == "a folder":
        path.mkdir()
    elif case == "a FIFO":
        os.mkfifo(path)
    elif case == "/dev/zero":
        path = Path("/dev/zero")
    elif case == "over 1 MiB":
        write_text(path, config_text(tmp_path, "big") + ("# padding\n" * 110_000))
    else:
        (tmp_path / "base.yaml").mkdir()
        write_yaml(path, {**small(tmp_path, "based"), "base": "base.yaml"})
    expected = {
        "a folder": f"'{path}' is not a regular file (a folder); pass a YAML file with -c",
        "a FIFO": f"'{path}' is not a regular file (a FIFO); pass a YAML file with -c",
        "/dev/zero": "'/dev/zero' is not a regular file (a device); pass a YAML file with -c",
        "over 1 MiB": f"config file '{path}' is larger than 1 MiB",
        "a base that is a folder": f"'{tmp_path / 'base.yaml'}' is not a regular file (a folder); point 'base:' in {path} at a YAML file",
    }[case]
    assert expected in refused(capsys, done, tmp_path, "train", "-c", path)
