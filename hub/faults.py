"""Crash points for fault-injection tests: the hub SIGKILLs itself at a named step.

The crash tests must prove that a hub killed *between* two particular steps (chunk fsync'd but offset
not yet recorded; digest verified but ledger not yet committed; Delta commit made but the ledger not
told) recovers without losing or doubling a row. Killing from outside at a random moment rarely hits
those windows, so the test names the window in ``HARBOUR_HUB_CRASH_AT`` and the hub kills itself there
with SIGKILL -- no cleanup, no flush, exactly like a power cut of the process. Unset, this is a no-op.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable

CRASH_ENV = "HARBOUR_HUB_CRASH_AT"
CRASH_POINTS = (
    "after-chunk-fsync",  # staging file fsync'd, offset not yet persisted
    "before-ledger-commit",  # digest verified, ledger not committed
    "after-ledger-commit",  # ledger committed, answer not sent
    "before-delta-commit",  # merge batch planned, Delta not written
    "after-delta-commit",  # Delta written, ledger not told
)

log = logging.getLogger("harbour.hub.faults")

CrashHook = Callable[[str], None]


def no_crash(point: str) -> None:
    return None


def crash_hook(point: str | None) -> CrashHook:
    if not point:
        return no_crash
    if point not in CRASH_POINTS:
        raise ValueError(f"{CRASH_ENV}={point!r} is not one of {', '.join(CRASH_POINTS)}")

    def hook(reached: str) -> None:
        if reached == point:
            log.error("crash point %s reached: SIGKILL (fault injection from %s)", point, CRASH_ENV)
            os.kill(os.getpid(), signal.SIGKILL)

    return hook
