"""Directory entries that survive a power cut: ``fsync_dir`` and ``make_dirs``.

A file's fsync makes its bytes durable, not its name: the entry in its directory is durable only once that
directory is fsync'd, and a directory's own entry only once *its* parent is. A directory made with
``mkdir(parents=True)`` and never synced can vanish at a power cut with every fsync'd file in it (the
power-loss harness, ``scenarios/powercut_fs.py``, showed acknowledged writes lost that way). Standard library
only: ``dir_lock`` uses it before anything heavy is imported. The hub has the same two in ``hub.durable``.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(directory: Path) -> None:
    """``directory.mkdir(parents=True, exist_ok=True)``, with each directory it creates durable: its parent is
    fsync'd. Costs nothing when the directory exists already."""
    missing = []
    for each in (directory, *directory.parents):
        if each.is_dir():
            break
        missing.append(each)
    for each in reversed(missing):
        each.mkdir(exist_ok=True)
        fsync_dir(each.parent)
