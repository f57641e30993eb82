"""A failed pass of the hub's background loops (``hub.server._background_failed``): a busy ledger is a warning
that the log's repeat filter can fold, anything else a traceback."""

from __future__ import annotations

import logging

import psycopg

from hub.server import _background_failed
from sync_protocol.log_hygiene import REPEAT_KIND


def test_a_busy_ledger_is_a_foldable_warning_and_a_bug_is_a_traceback(caplog):
    with caplog.at_level(logging.WARNING, logger="harbour.hub"):
        _background_failed(psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"),
                           "could not expire abandoned uploads", 60)
        _background_failed(KeyError("site"), "could not record the fleet history", 60)
    busy, bug = caplog.records
    assert busy.levelno == logging.WARNING and busy.exc_info is None
    assert getattr(busy, REPEAT_KIND) == "background could not expire abandoned uploads"
    assert "ledger is busy" in busy.getMessage() and "retrying in 60 s" in busy.getMessage()
    assert bug.levelno == logging.ERROR and bug.exc_info is not None and bug.exc_info[0] is KeyError
