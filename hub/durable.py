"""Directory entries that survive a power cut: ``fsync_dir`` and ``make_dirs``.

A file's fsync makes its bytes durable, not its name: its entry is durable once its directory is fsync'd, and
a directory's own entry once its parent is. A hub directory made with ``mkdir(parents=True)`` and never synced
can vanish at a power cut with the ledger and every staged segment in it (the power-loss harness,
``scenarios/powercut_fs.py``, lost a registered site that way). The edge has the same two functions in
``edge_node.durable``: the ship and the office are separate programs and neither imports the other.
"""

from __future__ import annotations

import os
from pathlib import Path


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
