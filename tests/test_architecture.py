"""The layout holds: layers import only downward, no module imports itself round a circle, every
module imports on its own, and the top level holds only the public face.

The layers are declared once, in pyproject.toml's ``[tool.importlinter]`` contract, and checked
with import-linter; the circle check walks grimp's module graph (the graph import-linter reads).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "longtail"


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("longtail", include_external_packages=False)


def _circles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_circle_anywhere_in_src():
    graph = _graph()
    assert len(graph.modules) > 100  # the whole package was read
    assert _circles(graph) == []


def test_the_circle_check_finds_a_circle():
    graph = grimp.ImportGraph()
    for name in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(name)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.c")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert _circles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_layers_contract_holds():
    """pyproject.toml's layers contract, checked by import-linter (lazy imports inside functions count)."""
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml"), "--no-cache"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "1 kept, 0 broken" in out.stdout


def test_every_module_imports_on_its_own():
    """Each module imported first, in a process where no other longtail module is loaded yet."""
    code = (
        "import importlib, pkgutil, sys, longtail\n"
        "names = sorted(m.name for m in pkgutil.walk_packages(longtail.__path__, 'longtail.') if not m.name.endswith('__main__'))\n"
        "bad = []\n"
        "for name in names:\n"
        "    for loaded in [m for m in sys.modules if m == 'longtail' or m.startswith('longtail.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as e:\n"
        "        bad.append(f'{name}: {type(e).__name__}: {e}')\n"
        "print(len(names))\n"
        "print('\\n'.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    count, *failures = out.stdout.strip().splitlines()
    assert int(count) > 100
    assert failures == []


def test_only_the_public_face_sits_at_the_top_level():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "api.py"]
    packages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert "cli" in packages and "core" in packages


@pytest.mark.parametrize("name", ["train", "evaluate", "predict", "export", "load_config"])
def test_the_public_names_resolve(name):
    import longtail

    assert callable(getattr(longtail, name))


def test_component_packages_are_reachable_from_a_bare_import():
    """``import longtail; longtail.losses.create(...)`` as docs/methods.md shows it, in a fresh process."""
    code = (
        "import longtail\n"
        "loss = longtail.losses.create('focal', class_counts=[500, 50, 5], gamma=2.0)\n"
        "print(type(loss).__name__, round(longtail.metrics.compute([[2.0, 0.0], [0.0, 1.0]], [0, 1])['accuracy'], 3))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["FocalLoss", "1.0"]
