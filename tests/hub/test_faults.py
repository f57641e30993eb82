"""Crash hooks: a no-op unless asked, and only known points may be asked for."""

from __future__ import annotations

import pytest

from hub.faults import CRASH_POINTS, crash_hook, no_crash


def test_hooks():
    assert crash_hook(None) is no_crash and crash_hook("") is no_crash
    hook = crash_hook(CRASH_POINTS[0])
    hook(CRASH_POINTS[1])  # another point: nothing happens (the process is still here)
    with pytest.raises(ValueError, match="not one of"):
        crash_hook("whenever")
