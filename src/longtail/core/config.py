"""Reading a recipe: YAML, dotted command-line overrides, validation against the schema, the resolved dump.

Every problem becomes a one-line :class:`~longtail.core.errors.ConfigError` naming the key, the
file and the closest valid key.
"""

from __future__ import annotations

import copy
import os
import stat
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .errors import ConfigError, did_you_mean
from .schema import Config

#: a recipe is a few kilobytes; a larger file is not a config, and a device such as /dev/zero would never end
MAX_CONFIG_BYTES = 2**20
#: values one YAML document may hold with its aliases expanded (a recipe holds hundreds): an alias bomb stops here
MAX_YAML_VALUES = 100_000
#: nesting levels of one YAML document (a recipe nests five or so)
MAX_YAML_DEPTH = 64
#: files in one chain of ``base:`` files
MAX_BASES = 32


# ---------------------------------------------------------------------------------- YAML
class _Refused(Exception):
    """YAML that parses but that a config must not be (a duplicated key, an alias bomb); the message lacks the source."""


class ConfigLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader (plain data, no python tags) that refuses a duplicated key and a document whose aliases
    expand past :data:`MAX_YAML_VALUES` values or that nests deeper than :data:`MAX_YAML_DEPTH`, before anything is built."""

    _written = 0  # values composed so far (an alias counts once here, in full in _ExpandedSize)

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        _ExpandedSize().of(node, 0)
        return self.construct_document(node)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        """Stop composing at MAX_YAML_VALUES written values: pure-Python PyYAML needs seconds for a megabyte of them."""
        self._written += 1
        if self._written > MAX_YAML_VALUES:
            raise _Refused(f"the YAML holds more than {MAX_YAML_VALUES} values; a config needs far fewer (keep long lists in the data files it names)")
        return super().compose_node(parent, index)

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        """Stop at the 65th nested '[' or '{': the scanner's work per token grows with the nesting (quadratic in a file of '[')."""
        if self.flow_level >= MAX_YAML_DEPTH:
            raise _Refused(f"line {self.get_mark().line + 1}: the YAML nests deeper than {MAX_YAML_DEPTH} levels; a config needs a few")
        super().fetch_flow_collection_start(TokenClass)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self._refuse_duplicate_keys(node)
        return super().construct_mapping(node, deep=deep)

    def _refuse_duplicate_keys(self, node: yaml.MappingNode) -> None:
        """safe_load keeps the last of two equal keys without a word; a config that says a thing twice is a mistake."""
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue  # '<<: *base' merges are meant to be overridden
            key = self.construct_object(key_node)
            if key in seen:
                raise _Refused(f"key {key!r} appears twice ({_two_places(seen[key], key_node.start_mark)}); keep one")
            seen[key] = key_node.start_mark


def _two_places(first: yaml.Mark, second: yaml.Mark) -> str:
    if first.line != second.line:
        return f"lines {first.line + 1} and {second.line + 1}"
    return f"line {first.line + 1}, columns {first.column + 1} and {second.column + 1}"


class _ExpandedSize:
    """Counts a composed document's values as the built data will hold them: an alias shares its anchor's node, so the
    count is memoised per node (linear in the file) while it adds up what every alias repeats. The composer already
    stopped at MAX_YAML_VALUES written values, so only aliases can take the count past it."""

    def __init__(self) -> None:
        self.sizes: dict[int, int] = {}
        self.open: set[int] = set()

    def of(self, node: yaml.Node, depth: int) -> int:
        key = id(node)
        if key in self.sizes:
            return self.sizes[key]
        line = node.start_mark.line + 1
        if key in self.open:
            raise _Refused(f"line {line}: a YAML alias refers to a value that contains it (a recursive structure); write the value out")
        if depth > MAX_YAML_DEPTH:
            raise _Refused(f"line {line}: the YAML nests deeper than {MAX_YAML_DEPTH} levels; a config needs a few")
        self.open.add(key)
        total = 1
        for child in _children(node):
            total += self.of(child, depth + 1)
            if total > MAX_YAML_VALUES:
                raise _Refused(f"YAML aliases expand to more than {MAX_YAML_VALUES} values (an alias bomb: '*name' repeats the whole "
                               "'&name' value); write the values out instead of anchors and aliases")
        self.open.discard(key)
        self.sizes[key] = total
        return total


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def parse_yaml(text: str, source: str) -> Any:
    """``text`` as :func:`yaml.safe_load` reads it, or a one-line ConfigError naming ``source`` for a duplicated key, an
    alias bomb or too deep a nesting. A syntax error stays a ``yaml.YAMLError``: the caller words it (or, for an
    override, reads the value as a plain string)."""
    try:
        return yaml.load(text, Loader=ConfigLoader)  # a SafeLoader: plain data only
    except _Refused as e:
        raise ConfigError(f"{source}: {e}") from None
    except RecursionError:  # nesting too deep for PyYAML's own composer, before our count could see it
        raise ConfigError(f"{source}: the YAML nests deeper than {MAX_YAML_DEPTH} levels; a config needs a few") from None


# ------------------------------------------------------------------------------- loading
def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a", "b", "c"], yaml-parsed value); a value that is not YAML is the plain string."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' has no '='; write it as key.path=value, e.g. train.epochs=3")
    if "\x00" in text:
        raise ConfigError(f"override {text!r} holds a NUL character (\\x00); remove it")
    key, value = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{text}' has an empty key; write it as key.path=value")
    try:
        parsed = parse_yaml(value, f"override '{_shorten(text)}'") if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key.split("."), parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted keys in a nested dict (creating intermediate dicts). Lists take integer keys."""
    out = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node: Any = out
        for i, part in enumerate(path[:-1]):
            if isinstance(node, list):
                node = _list_item(node, part, path[: i + 1])
                continue
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
            if not isinstance(node, (dict, list)):
                raise ConfigError(f"override '{text}': '{'.'.join(path[: i + 1])}' is a value, not a section")
        last = path[-1]
        if isinstance(node, list):
            idx = _index(last, path)
            if idx >= len(node):
                raise ConfigError(f"override '{text}': list '{'.'.join(path[:-1])}' has {len(node)} items")
            node[idx] = value
        else:
            node[last] = value
    return out


def _index(part: str, path: list[str]) -> int:
    try:
        return int(part)
    except ValueError:
        raise ConfigError(f"'{'.'.join(path)}': '{part}' indexes a list and must be an integer") from None


def _list_item(node: list[Any], part: str, path: list[str]) -> Any:
    idx = _index(part, path)
    if idx >= len(node):
        raise ConfigError(f"'{'.'.join(path)}': list has {len(node)} items")
    return node[idx]


def load_raw(path: str | Path) -> dict[str, Any]:
    """A config file merged over its ``base:`` files, not validated yet."""
    p = Path(path)
    missing = f"config file '{p}' not found; pass an existing YAML file with -c (see configs/ for recipes)"
    return _load_file(p, (), missing, "pass a YAML file with -c")


def _load_file(p: Path, chain: tuple[Path, ...], missing: str, fix: str) -> dict[str, Any]:
    """One file of a base chain (``chain``: the files that named it, top first), merged over its own base."""
    text = read_config_text(p, missing, fix)
    try:
        data = parse_yaml(text, str(p)) or {}
    except yaml.YAMLError as e:
        raise ConfigError(_yaml_error_message(e, text, p)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of sections (data:, model:, ...)")
    base = data.pop("base", None)
    if base is None:
        return data
    base_path = _base_path(p, base)
    chain = (*chain, p)
    _check_base_chain(chain, base_path)
    missing = f"{p}: base '{base}' not found (looked for {base_path}); the path is relative to {p.parent}"
    return deep_merge(_load_file(base_path, chain, missing, f"point 'base:' in {p} at a YAML file"), data)


def _base_path(p: Path, base: Any) -> Path:
    """Where ``base:`` of file ``p`` points: a recipe extends another (``base: ce.yaml``, relative to ``p``), then deep-merges."""
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{p}: base must be the path of one YAML file, not {_shorten(repr(base))}")
    if "\x00" in base:
        raise ConfigError(f"{p}: base {base!r} holds a NUL character (\\x00); remove it")
    return p.parent / base  # an absolute base stays itself


def _check_base_chain(chain: tuple[Path, ...], base: Path) -> None:
    """A base that is already in the chain (the file itself, or a file that leads to it) would recurse for ever."""
    shown = " -> ".join(str(f) for f in (*chain, base))
    if base.resolve() in {f.resolve() for f in chain}:
        raise ConfigError(f"{chain[0]}: base chain {shown} is a cycle; remove one base")
    if len(chain) >= MAX_BASES:
        raise ConfigError(f"{chain[0]}: base chain {shown} is longer than {MAX_BASES} files; merge some of them")


def read_config_text(p: Path, missing: str, fix: str) -> str:
    """The UTF-8 text of a config file, read only from a regular file of at most :data:`MAX_CONFIG_BYTES` (a FIFO would
    block, /dev/zero never ends). ``missing`` is the message when there is no such file, ``fix`` ends the others."""
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)  # O_NONBLOCK: opening a FIFO does not wait for a writer
    except FileNotFoundError:
        raise ConfigError(missing) from None
    except (OSError, ValueError) as e:  # ValueError: a NUL in the path
        raise ConfigError(f"config file '{p}' cannot be read ({getattr(e, 'strerror', None) or e}); {fix}") from None
    kind = _not_regular(os.fstat(fd).st_mode)  # before fdopen, which refuses a folder with its own error
    if kind:
        os.close(fd)
        raise ConfigError(f"'{p}' is not a regular file (a {kind}); {fix}")
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file '{p}' is larger than {MAX_CONFIG_BYTES // 2**20} MiB, far more than a config needs; {fix}")
    return _decode_utf8(data, p)


def _not_regular(mode: int) -> str:
    """What a file that is not a regular file is ('' for a regular file)."""
    kinds = [(stat.S_ISREG, ""), (stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "device"), (stat.S_ISBLK, "device"),
             (stat.S_ISSOCK, "socket")]
    return next((kind for test, kind in kinds if test(mode)), "special file")


def _decode_utf8(data: bytes, p: Path) -> str:
    """``data`` as UTF-8 (a leading byte-order mark is dropped); an error names the line, column and byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line, column = _line_column(data, e.start)
        raise ConfigError(f"{p}: line {line}, column {column} (byte {e.start}, 0x{data[e.start]:02x}) is not UTF-8 text; "
                          "save the file as UTF-8") from None


def _yaml_error_message(e: yaml.YAMLError, text: str, p: Path) -> str:
    """A YAML error of file ``p`` as one line with its place."""
    if isinstance(e, yaml.reader.ReaderError):  # a character YAML does not allow (a NUL, a control character): only its offset is known
        line, column = _line_column(text, e.position)
        return f"{p}: line {line}, column {column} holds the character U+{e.character:04X}, which YAML does not allow; remove it"
    mark = getattr(e, "problem_mark", None)
    where = f" at line {mark.line + 1}" if mark else ""
    return f"{p}: not valid YAML{where}; fix the syntax ({str(getattr(e, 'problem', None) or e).splitlines()[0]})"


def _line_column(data: str | bytes, position: int) -> tuple[int, int]:
    """1-based line and column of an offset (in characters of a str, bytes of a bytes)."""
    newline = "\n" if isinstance(data, str) else b"\n"
    return data.count(newline, 0, position) + 1, position - data.rfind(newline, 0, position)


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``: mappings merge key by key, everything else (lists too) replaces."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and "name" not in value:
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_config(path: str | Path | None = None, overrides: list[str] | None = None, raw: dict[str, Any] | None = None) -> Config:
    """Load, override and validate against the schema; ``raw`` replaces the file (API use).

    Component names and kwargs are not checked here: :func:`longtail.catalog.check.load_config`
    does that on top (it knows the registries)."""
    source = str(path) if path is not None else "<dict>"
    data = load_raw(path) if path is not None else copy.deepcopy(raw or {})
    data = apply_overrides(data, overrides or [])
    cfg = validate(data, source)
    cfg.data._config_file = source
    return cfg


def validate(data: dict[str, Any], source: str = "<dict>") -> Config:
    """``data`` against the schema; a NUL character anywhere is refused first (in a path it would fail deep inside open())."""
    nul = _nul_at(data, "")
    if nul is not None:
        raise ConfigError(f"{source}: {nul} holds a NUL character (\\x00); remove it")
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None


def _nul_at(value: Any, path: str) -> str | None:
    """Which key, or the value of which key, is the first to hold a NUL character (None: none does)."""
    if isinstance(value, str):
        return f"the value of '{path}'" if "\x00" in value else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for key, item in items:
        where = f"{path}.{key}" if path else str(key)
        if "\x00" in where:
            return f"the key {where.replace(chr(0), '<NUL>')!r}"
        found = _nul_at(item, where)
        if found is not None:
            return found
    return None


#: pydantic error types that only say that a value is not of one union member's type: another member's error says more
_TYPE_MISMATCH = ("_type", "_parsing", "literal_error")


def format_validation_error(err: ValidationError, source: str) -> str:
    """The telling pydantic error as one line: key, problem, file, closest valid key."""
    first = _telling(err.errors())
    loc = _clean_loc(first["loc"])
    key = ".".join(loc) or "(top level)"
    kind = first["type"]
    if kind == "extra_forbidden":
        valid = _valid_keys_at(loc[:-1])
        return f"{source}: unknown key '{key}'{did_you_mean(loc[-1], valid)}; valid keys here: {', '.join(valid)}"
    if kind == "missing":
        return f"{source}: missing required key '{key}'; add it to the config"
    if kind == "value_error" and not loc:  # a whole-config rule (model_validator): its message says it all
        return f"{source}: {first['msg'].removeprefix('Value error, ')}"
    value = first.get("input")
    shown = _shorten(repr(value)) if not isinstance(value, dict) else "a mapping"
    return f"{source}: bad value for '{key}' ({shown}): {first['msg']}"


def _telling(errors: list[Any]) -> Any:
    """The first error, unless it only says that the value is not of one union member's type and another member of the same key
    says what is wrong (``image_size: [8, 0]``: not the int member's 'a valid integer' but the tuple member's range)."""
    first = errors[0]
    key = _clean_loc(first["loc"])
    same_key = (e for e in errors if _clean_loc(e["loc"])[: len(key)] == key)
    return next((e for e in same_key if not e["type"].endswith(_TYPE_MISMATCH)), first)


def _clean_loc(loc: tuple[Any, ...]) -> list[str]:
    return [str(x) for x in loc if not _is_union_tag(x)]


def _shorten(text: str, limit: int = 80) -> str:
    """A value as the one-line message shows it: a long one cut (a 100 kB name is no help on a terminal)."""
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-2:]}"


def _is_union_tag(x: Any) -> bool:
    # pydantic puts union member names (e.g. 'literal['dataset','imagenet']', 'int', 'constrained-int') in loc paths
    return isinstance(x, str) and (x.startswith(("literal[", "tuple[", "list[", "function-", "constrained-"))
                                   or x in {"int", "float", "str", "NormalizeConfig", "LongTailConfig", "SPBLConfig", "EarlyStoppingConfig", "ClassesConfig"})


def _valid_keys_at(loc: list[str]) -> list[str]:
    model: Any = Config
    for part in loc:
        if part.isdigit():
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        model = model_of(field.annotation)
        if model is None:
            return []
    return sorted(model.model_fields)


def model_of(annotation: Any) -> Any:
    """The pydantic section a field holds (through Optional / unions), or None for a plain value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = model_of(arg)
        if found is not None:
            return found
    return None


def dump(cfg: Config) -> str:
    """The resolved config as YAML (what ``config show`` prints and the run directory stores)."""
    return yaml.safe_dump(to_plain(cfg), sort_keys=False)


def to_plain(cfg: Config) -> dict[str, Any]:
    return cfg.model_dump(mode="json")
