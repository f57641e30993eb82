"""Layers call down, never back up: no module of a package imports a module that imports it back.

The imports are read with ``ast``, not by importing, so every import counts: module level, inside a
function (heavy imports are deferred that way) and under ``if TYPE_CHECKING:`` (a cycle kept for the type
checker only is still two modules that know each other's internals). A cycle of any length within a
package fails, and the message names it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

ACYCLIC_PACKAGES = ("edge_node", "scenarios", "sync_protocol", "hub")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _imported_modules(path: Path, module: str, known: set[str]) -> set[str]:
    """Every module of ``known`` that ``path`` imports, wherever in the file the import stands."""
    package = _package_of(module, path)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from . import wal`` imports the module ``wal``; ``from .x import Name`` imports ``x``.
            names = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known] or [base]
        else:
            continue
        for name in names:
            while name and name not in known:  # ``a.b.Name`` or a sub-package's name: the nearest module
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def import_graph(package: str) -> dict[str, set[str]]:
    """Module -> modules of the same package it imports (package ``__init__`` files included)."""
    paths = {_module_name(p): p for p in (ROOT / package).rglob("*.py")}
    known = set(paths)
    return {module: _imported_modules(path, module, known) for module, path in paths.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("package", ACYCLIC_PACKAGES)
def test_no_import_cycles(package: str) -> None:
    found = cycles(import_graph(package))
    assert not found, f"{package} has import cycles (break them with a callback or a Protocol): {found}"


def test_the_walk_sees_every_kind_of_import(tmp_path: Path) -> None:
    """A cycle hidden under TYPE_CHECKING or inside a function is found, as is one of three modules."""
    graph = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}, "p.d": {"p.a"}}
    assert cycles(graph) == [["p.a", "p.b", "p.c"]]
    source = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n"
              "def f():\n    from . import c\n    import p.d.x\n")
    path = tmp_path / "a.py"
    path.write_text(source)
    assert _imported_modules(path, "p.a", {"p.a", "p.b", "p.c", "p.d"}) == {"p.b", "p.c", "p.d"}


def test_the_edge_uses_nothing_of_the_hub_but_its_http_shell():
    """The shared HTTP shell sits in ``hub/http_shell`` (the top-level layout is fixed); it must stay free of
    the rest of the hub, and the edge may import that sub-package only."""
    shell = import_graph("hub")
    assert not {m for module, targets in shell.items() if module.startswith("hub.http_shell")
                for m in targets if not m.startswith("hub.http_shell")}
    for path in (ROOT / "edge_node").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            for name in names:
                assert name.split(".")[0] != "hub" or name.startswith("hub.http_shell"), (path, name)
