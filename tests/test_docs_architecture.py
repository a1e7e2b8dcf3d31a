"""docs/architecture.md's package table matches the tree: one row per package folder, each row's modules
are the folder's ``.py`` files, and every layer of pyproject.toml's import-linter contract is named.

Reads text only (no longtail or torch import), so it runs in well under a second.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "longtail"
DOC = ROOT / "docs" / "architecture.md"
START, END = "<!-- package-table:start -->", "<!-- package-table:end -->"
COLUMNS = ["package", "layer", "job", "modules"]


def parse_table(text: str) -> dict[str, dict[str, object]]:
    """``{package folder relative to src/ ("longtail/data/sources"): {"layers": set, "modules": set}}``."""
    assert text.count(START) == 1 and text.count(END) == 1, f"docs/architecture.md needs one {START} ... {END} block"
    block = text.split(START, 1)[1].split(END, 1)[0]
    lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == COLUMNS, header
    assert set(lines[1].replace("|", "").replace(" ", "")) <= {"-", ":"}, lines[1]
    rows: dict[str, dict[str, object]] = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == len(COLUMNS), f"a row needs {len(COLUMNS)} cells (no '|' inside a cell): {line}"
        package, layer, _job, modules = cells
        m = re.fullmatch(r"`([\w/]+?)/?`", package)
        assert m, f"package cell must be one folder in backticks: {package!r}"
        name = m.group(1)
        assert name not in rows, f"{name} has two rows"
        listed = re.findall(r"`([^`]+)`", modules)
        assert listed and all(x.endswith(".py") for x in listed), f"{name}: modules must be `name.py` entries: {modules!r}"
        assert len(listed) == len(set(listed)), f"{name}: a module is listed twice"
        rows[name] = {"layers": set(re.findall(r"`(longtail(?:\.\w+)*)`", layer)), "modules": set(listed)}
    return rows


def package_folders() -> dict[str, set[str]]:
    """Every folder under src/longtail with an ``__init__.py`` (the top level included) -> its modules."""
    found = {}
    for init in sorted(PACKAGE.rglob("__init__.py")):
        folder = init.parent
        found[folder.relative_to(SRC).as_posix()] = {p.name for p in folder.glob("*.py") if p.name != "__init__.py"}
    return found


def table_differences(rows: dict[str, dict[str, object]], tree: dict[str, set[str]]) -> list[str]:
    """What the table gets wrong about the tree, one line each (empty: it matches)."""
    problems = [f"missing row for package {p}" for p in sorted(set(tree) - set(rows))]
    problems += [f"row for {p}, which is not a package folder" for p in sorted(set(rows) - set(tree))]
    for name in sorted(set(rows) & set(tree)):
        listed = rows[name]["modules"]
        for module in sorted(tree[name] - listed):
            problems.append(f"{name}: {module} is on disk but not in the table")
        for module in sorted(listed - tree[name]):
            problems.append(f"{name}: {module} is in the table but not on disk")
    return problems


def importlinter_layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = [c for c in config["tool"]["importlinter"]["contracts"] if c.get("type") == "layers"]
    assert len(contracts) == 1
    return [name.strip() for entry in contracts[0]["layers"] for name in entry.split("|") if name.strip()]


@pytest.fixture(scope="module")
def rows() -> dict[str, dict[str, object]]:
    return parse_table(DOC.read_text())


def test_the_tree_has_the_packages_it_should():
    tree = package_folders()
    assert "longtail" in tree and "longtail/core" in tree and len(tree) > 10


def test_table_lists_exactly_the_package_folders(rows):
    assert set(rows) == set(package_folders())


def test_each_row_lists_exactly_its_modules(rows):
    assert table_differences(rows, package_folders()) == []


def test_every_importlinter_layer_is_named_in_the_table(rows):
    layers = importlinter_layers()
    assert "longtail.core" in layers and "longtail.cli" in layers
    named = set().union(*(r["layers"] for r in rows.values()))
    packages = {name.replace("/", ".") for name in rows}
    missing = [layer for layer in layers if layer not in named and layer not in packages]
    assert missing == []
    # and the layer column names nothing the contract does not have
    assert named - set(layers) == set()


def test_the_comparison_fails_when_a_module_is_missing(rows):
    tree = package_folders()
    name = "longtail/engine"
    dropped = sorted(tree[name])[0]
    mutated = {k: dict(v) for k, v in rows.items()}
    mutated[name]["modules"] = set(rows[name]["modules"]) - {dropped}
    assert table_differences(mutated, tree) == [f"{name}: {dropped} is on disk but not in the table"]


def test_the_parser_reads_a_fake_table_and_catches_a_missing_row():
    fake = "\n".join([
        "text", START,
        "| package | layer | job | modules |", "| --- | --- | --- | --- |",
        "| `longtail/` | `longtail.api` | the face | `api.py`, `__main__.py` |",
        "| `longtail/core/` | `longtail.core` | base | `errors.py` |",
        END, "more text",
    ])  # fmt: skip
    rows = parse_table(fake)
    assert rows == {"longtail": {"layers": {"longtail.api"}, "modules": {"api.py", "__main__.py"}},
                    "longtail/core": {"layers": {"longtail.core"}, "modules": {"errors.py"}}}
    tree = {"longtail": {"api.py", "__main__.py"}, "longtail/core": {"errors.py", "ranks.py"}, "longtail/data": {"build.py"}}
    assert table_differences(rows, tree) == ["missing row for package longtail/data", "longtail/core: ranks.py is on disk but not in the table"]
