"""Which tests defend which guarantee of the design (G1-G8, DESIGN.md "Guarantees").

A test that tries to break a guarantee says so with ``@pytest.mark.guarantee("G1")`` (several ids allowed;
``pytestmark = pytest.mark.guarantee(...)`` marks a whole module). The index is read from the source with
``ast`` rather than by collecting the suite: collecting imports every test module and its fixtures, which
takes seconds, while this walk takes milliseconds, so ``tests/test_guarantees.py`` and ``docs/generate.py``
(the table in docs/architecture.md) can both afford it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# The guarantees as DESIGN.md names them; a marker naming anything else is a typo or an outdated id.
GUARANTEES = {
    "G1": "durable ack",
    "G2": "exactly once",
    "G3": "resume",
    "G4": "integrity",
    "G5": "isolation",
    "G6": "bad input",
    "G7": "bounded resources",
    "G8": "provable completeness",
}

MARKER = "guarantee"


@dataclass(frozen=True)
class GuaranteeMark:
    """One ``guarantee`` marker: where it is, what it marks, and the ids it names (as written)."""

    path: str  # relative to the repository root, with forward slashes
    test: str  # ``test_name``, ``TestClass::test_name``, or ``*`` for a whole module
    line: int
    ids: tuple[str, ...]  # a non-literal argument is kept as its source text, so the check can name it

    @property
    def unknown(self) -> tuple[str, ...]:
        return tuple(i for i in self.ids if i not in GUARANTEES)


def _marker_ids(node: ast.expr) -> tuple[str, ...] | None:
    """The ids of ``pytest.mark.guarantee(...)`` (or ``mark.guarantee(...)``), None for any other expression."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == MARKER):
        return None
    owner = node.func.value
    if not ((isinstance(owner, ast.Attribute) and owner.attr == "mark")
            or (isinstance(owner, ast.Name) and owner.id == "mark")):
        return None
    args = list(node.args) + [k.value for k in node.keywords]
    return tuple(a.value if isinstance(a, ast.Constant) and isinstance(a.value, str) else ast.unparse(a)
                 for a in args)


def _module_marks(tree: ast.Module) -> Iterator[tuple[int, tuple[str, ...]]]:
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark"
                                                for t in stmt.targets):
            values = stmt.value.elts if isinstance(stmt.value, ast.List | ast.Tuple) else [stmt.value]
            for value in values:
                ids = _marker_ids(value)
                if ids is not None:
                    yield stmt.lineno, ids


def _decorated(body: list[ast.stmt], prefix: str = "") -> Iterator[tuple[str, int, tuple[str, ...]]]:
    for stmt in body:
        if isinstance(stmt, ast.ClassDef):
            yield from _decorated(stmt.body, f"{prefix}{stmt.name}::")
        if not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        for decorator in stmt.decorator_list:
            ids = _marker_ids(decorator)
            if ids is not None:
                yield f"{prefix}{stmt.name}", decorator.lineno, ids


def marks_in(path: Path, root: Path) -> list[GuaranteeMark]:
    tree = ast.parse(path.read_text(), filename=str(path))
    rel = path.relative_to(root).as_posix()
    found = [GuaranteeMark(rel, "*", line, ids) for line, ids in _module_marks(tree)]
    found += [GuaranteeMark(rel, name, line, ids) for name, line, ids in _decorated(tree.body)]
    return found


def all_marks(root: Path) -> list[GuaranteeMark]:
    """Every ``guarantee`` marker under ``root/tests``, in file and line order."""
    found: list[GuaranteeMark] = []
    for path in sorted((root / "tests").rglob("test_*.py")):
        found += marks_in(path, root)
    return found


def defenders(marks: list[GuaranteeMark]) -> dict[str, list[GuaranteeMark]]:
    """Guarantee id -> the marks naming it (every known id present, possibly with an empty list)."""
    index: dict[str, list[GuaranteeMark]] = {g: [] for g in GUARANTEES}
    for mark in marks:
        for gid in mark.ids:
            if gid in index:
                index[gid].append(mark)
    return index


def markdown_table(marks: list[GuaranteeMark]) -> str:
    """The table docs/architecture.md shows: per guarantee, the test files and the marked tests in each."""
    lines = ["| guarantee | tests that try to break it |", "|---|---|"]
    for gid, gmarks in defenders(marks).items():
        by_file: dict[str, list[str]] = {}
        for mark in gmarks:
            by_file.setdefault(mark.path, []).append("all" if mark.test == "*" else f"`{mark.test}`")
        cells = "<br>".join(f"`{path}`: {', '.join(tests)}" for path, tests in by_file.items())
        lines.append(f"| {gid} {GUARANTEES[gid]} | {cells or '**none**'} |")
    return "\n".join(lines)
