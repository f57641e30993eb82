"""sync_protocol is the pure core: no I/O, no clock, no randomness (STYLE 1, 7)."""

from __future__ import annotations

import ast
from pathlib import Path

import sync_protocol

FORBIDDEN_MODULES = {"asyncio", "aiohttp", "sqlite3", "sqlite_utils", "socket", "time", "random", "os",
                     "pathlib", "io", "subprocess", "threading", "requests", "urllib"}
FORBIDDEN_SUBMODULES = {"pyarrow.parquet", "pyarrow.csv", "pyarrow.json", "pyarrow.ipc", "pyarrow.fs",
                        "pyarrow.dataset", "pyarrow.flight"}
"""pyarrow's types and compute kernels are pure (the type rules use them); these parts of it read and write."""
FORBIDDEN_CALLS = {"open", "print", "input"}
CLOCK_ATTRIBUTES = {"now", "utcnow", "today", "time", "monotonic", "perf_counter", "time_ns"}

PACKAGE = Path(sync_protocol.__file__).parent


def modules():
    return sorted(PACKAGE.glob("*.py"))


def test_the_package_has_modules_to_check():
    assert len(modules()) >= 10


def test_no_module_imports_io_clock_or_randomness():
    offenders = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            offenders += [f"{path.name}: import {n}" for n in names if n.split(".")[0] in FORBIDDEN_MODULES
                          or any(n == m or n.startswith(m + ".") for m in FORBIDDEN_SUBMODULES)]
    assert offenders == []


def test_no_module_calls_io_builtins_or_reads_a_clock():
    offenders = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name) and func.id in FORBIDDEN_CALLS:
                    offenders.append(f"{path.name}:{node.lineno} {func.id}()")
                if isinstance(func, ast.Attribute) and func.attr in CLOCK_ATTRIBUTES:
                    offenders.append(f"{path.name}:{node.lineno} .{func.attr}()")
    assert offenders == []
