"""The house rules, read from the source: the engine has no import circles and never imports a face.

Imports are read with ``ast`` from every file, those inside functions too, so a lazy import
cannot hide a circle that only bites at run time. Imports under ``if TYPE_CHECKING:`` never run
and only name types for annotations; they are left out.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import console

PACKAGE = Path(console.__file__).parent
# The engine: these top-level modules and every module under these packages.
ENGINE_MODULES = {"service", "oauth", "tokens", "errors", "config", "crypto", "logs", "refresher", "qr", "journal"}
ENGINE_PACKAGES = {"store", "transfer"}
# What the engine must never import: the faces of the package, and the libraries only faces use.
FACES = {"console.cli", "console.api", "console.screens", "console.widgets", "console.app", "console.ui",
         "console.commands", "console.resources", "console.sandbox", "textual", "starlette", "uvicorn"}
# The TUI's screens and widgets import down (to its shared helpers), never sideways in a circle.
TUI_PARTS = {"app", "commands", "resources", "screens", "widgets", "tui"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            for orelse in child.orelse:
                yield orelse
                yield from _runtime_nodes(orelse)
            continue
        yield child
        yield from _runtime_nodes(child)


def imported(name: str, path: Path) -> set[str]:
    """Every module ``name`` imports, relative imports resolved, ``from pkg import mod`` as ``pkg.mod``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in MODULES else source)
    return found


def is_engine(name: str) -> bool:
    parts = name.split(".")
    return len(parts) >= 2 and (parts[1] in ENGINE_PACKAGES or (len(parts) == 2 and parts[1] in ENGINE_MODULES))


def is_tui(name: str) -> bool:
    parts = name.split(".")
    return len(parts) >= 2 and parts[1] in TUI_PARTS


def graph(within) -> dict[str, set[str]]:
    """Module -> the modules it imports, both sides kept to those ``within`` accepts."""
    return {name: {dep for dep in imported(name, path) if within(dep) and dep != name}
            for name, path in MODULES.items() if within(name)}


def circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in graph.get(node, ()):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("name", [n for n in MODULES if not n.endswith("__main__")])
def test_every_module_imports(name):
    importlib.import_module(name)


def test_the_engine_list_matches_the_package():
    engine = [name for name in MODULES if is_engine(name)]
    assert {"console.service", "console.oauth", "console.tokens", "console.store"} <= set(engine), engine


def test_no_import_circle_between_engine_modules():
    found = circles(graph(is_engine))
    assert [sorted(c) for c in found] == [], "import circles between engine modules"


def test_no_import_circle_between_tui_modules():
    found = circles(graph(is_tui))
    assert [sorted(c) for c in found] == [], "import circles between TUI modules"


def test_no_engine_module_imports_a_face():
    reaching = {name: sorted(dep for dep in imported(name, path)
                             if any(dep == face or dep.startswith(f"{face}.") for face in FACES))
                for name, path in MODULES.items() if is_engine(name)}
    assert {name: faces for name, faces in reaching.items() if faces} == {}


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    """The analysis itself: a circle made only of imports inside functions is still a circle."""
    graph = {"console.a": {"console.b"}, "console.b": {"console.c"}, "console.c": {"console.a"},
             "console.d": {"console.a"}}
    assert circles(graph) == [{"console.a", "console.b", "console.c"}]
    source = tmp_path / "console" / "store" / "thing.py"
    source.parent.mkdir(parents=True)
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..app import ConsoleApp\n"
                      "def later():\n    from ..service import AuthService\n    from . import cache\n"
                      "    from .. import oauth\n")
    found = imported("console.store.thing", source)
    assert found >= {"console.service", "console.store.cache", "console.oauth"}
    assert "console.app" not in found
