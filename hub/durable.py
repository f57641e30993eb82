"""Directory entries that survive a power cut: ``fsync_dir`` and ``make_dirs``.

A file's fsync makes its bytes durable, not its name: its entry is durable once its directory is fsync'd, and
a directory's own entry once its parent is. A hub directory made with ``mkdir(parents=True)`` and never synced
can vanish at a power cut with the ledger and every staged segment in it (the power-loss harness,
``scenarios/powercut_fs.py``, lost a registered site that way). The edge has the same two functions in
``edge_node.durable``: the ship and the office are separate programs and neither imports the other.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

POSTGRES_DISK_FULL = "53100"
"""PostgreSQL's SQLSTATE for ``disk_full`` (psycopg's ``errors.DiskFull``)."""


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (either opens read-only for it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    fsync_path(directory)


def make_dirs(directory: Path) -> None:
    """``directory.mkdir(parents=True, exist_ok=True)``, each directory it creates made durable (its parent
    fsync'd). Costs nothing when the directory exists already."""
    missing = []
    for each in (directory, *directory.parents):
        if each.is_dir():
            break
        missing.append(each)
    for each in reversed(missing):
        each.mkdir(exist_ok=True)
        fsync_dir(each.parent)


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` says the disk is full: an OSError (ENOSPC, EDQUOT), SQLite's SQLITE_FULL or PostgreSQL's
    disk_full. The answer is then 507 (retry later), not a bare 500."""
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(error, sqlite3.Error):
        return (getattr(error, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_FULL
    return getattr(error, "sqlstate", None) == POSTGRES_DISK_FULL
