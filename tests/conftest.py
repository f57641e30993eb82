"""Fixtures shared by the edge's and the hub's tests."""

from __future__ import annotations

from types import SimpleNamespace

import pyarrow as pa
import pytest


def _deep_struct(depth: int) -> pa.Array:
    """One row of a struct nested ``depth`` levels deep (the type rules allow 32)."""
    dtype, value = pa.int64(), 1
    for _ in range(depth):
        dtype, value = pa.struct([("f", dtype)]), {"f": value}
    return pa.array([value], dtype)


@pytest.fixture(scope="session")
def hostile():
    """Values no unmodified edge stores, for the tests that show the edge refusing and the hub quarantining
    them: a string array holding invalid UTF-8 (pyarrow builds it without checking), and deep structs."""
    invalid_utf8 = pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(b"\0\0\0\0\2\0\0\0"),
                                                          pa.py_buffer(b"\xff\xfe")])
    return SimpleNamespace(invalid_utf8=invalid_utf8, deep_struct=_deep_struct)
