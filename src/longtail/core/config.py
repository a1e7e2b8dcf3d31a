"""Reading a recipe: YAML, dotted command-line overrides, validation against the schema, the resolved dump.

Every problem becomes a one-line :class:`~longtail.core.errors.ConfigError` naming the key, the
file and the closest valid key.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .errors import ConfigError, did_you_mean
from .schema import Config


# ------------------------------------------------------------------------------- loading
def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a", "b", "c"], yaml-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' has no '='; write it as key.path=value, e.g. train.epochs=3")
    key, value = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{text}' has an empty key; write it as key.path=value")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
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
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file '{p}' not found; pass an existing YAML file with -c (see configs/ for recipes)")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}: not valid YAML{where}; fix the syntax ({getattr(e, 'problem', e)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of sections (data:, model:, ...)")
    base = data.pop("base", None)
    if base is not None:
        # a recipe may extend another: `base: ce.yaml` (relative to this file), then deep-merge
        base_path = (p.parent / str(base)) if not Path(str(base)).is_absolute() else Path(str(base))
        if not base_path.is_file():
            raise ConfigError(f"{p}: base '{base}' not found (looked for {base_path}); the path is relative to {p.parent}")
        data = deep_merge(load_raw(base_path), data)
    return data


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
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None


def format_validation_error(err: ValidationError, source: str) -> str:
    """The first pydantic error as one line: key, problem, file, closest valid key."""
    first = err.errors()[0]
    loc = [str(x) for x in first["loc"] if not _is_union_tag(x)]
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
    shown = repr(value) if not isinstance(value, dict) else "a mapping"
    return f"{source}: bad value for '{key}' ({shown}): {first['msg']}"


def _is_union_tag(x: Any) -> bool:
    # pydantic puts union member names (e.g. 'literal['dataset','imagenet']', 'int') in loc paths
    return isinstance(x, str) and (x.startswith(("literal[", "tuple[", "list[", "function-")) or x in {"int", "float", "str", "NormalizeConfig", "LongTailConfig", "SPBLConfig", "EarlyStoppingConfig", "ClassesConfig"})


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
