"""Make a local Delta table's new versions durable before the ledger is told about them.

The merger's exactly-once rests on an order: the Delta commit, then ``finish_batch`` in the ledger, then the
merged segments' staging files deleted. The ledger's commit and the deletes are fsync'd; delta-rs (through
object_store's local file system) writes data files, commit files and checkpoints, and renames them into
place, without any fsync. So after a power cut the ledger could say "merged" for rows whose Delta commit never
reached the disk, with their staging files already gone: the power-loss harness (``scenarios/powercut_fs.py``)
lost a whole batch that way. ``sync_versions`` fsyncs what a range of versions wrote -- each commit file, the
data files it adds, checkpoints -- and every directory that holds a new entry, before the ledger moves on.

An object store (``s3://``) makes each object durable before it answers; there is nothing to do there.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote

from .durable import fsync_dir, fsync_path

LOG_DIR = "_delta_log"


def sync_versions(table_dir: Path, first: int, last: int) -> None:
    """fsync versions ``first``..``last`` of the table in ``table_dir`` (files, then their directories)."""
    log_dir = table_dir / LOG_DIR
    directories = {log_dir, table_dir, table_dir.parent}  # the table's own entry may be new as well
    for version in range(max(first, 0), last + 1):
        commit = log_dir / f"{version:020d}.json"
        for added in added_files(commit):
            path = table_dir / added
            fsync_path(path)
            directories.update(parent for parent in path.parents if table_dir in parent.parents)
        fsync_path(commit)
        checkpoint = log_dir / f"{version:020d}.checkpoint.parquet"
        if checkpoint.exists():
            fsync_path(checkpoint)
    last_checkpoint = log_dir / "_last_checkpoint"
    if last_checkpoint.exists():
        fsync_path(last_checkpoint)
    for directory in sorted(directories, key=lambda path: len(path.parts), reverse=True):
        fsync_dir(directory)


def added_files(commit: Path) -> list[str]:
    """The data files (relative to the table) that a commit file's ``add`` actions name."""
    found = []
    with open(commit, encoding="utf-8") as lines:
        for line in lines:
            action = json.loads(line) if line.strip() else {}
            if "add" in action:
                found.append(unquote(action["add"]["path"]))
    return found

