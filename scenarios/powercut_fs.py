"""A FUSE passthrough that forgets what was never fsync'd: the power-loss layer of the crash tests (issue 16).

Theory of operation. ``python -m scenarios.powercut_fs BASE MOUNT CONTROL`` mounts ``BASE/root`` at MOUNT. Every
operation goes straight through to ``BASE/root``, so the processes under test read back what they wrote, as from
a page cache. Beside it the layer keeps a *journal* of everything that is not durable yet, in the strict POSIX
sense that crash-safe storage code must assume (and that SQLite's own crash tests assume):

* **file data**: each write or truncate since the file's last ``fsync``/``fdatasync`` is an undo record (the
  bytes it overwrote and the size before it). An fsync of the file empties its records.
* **directory entries**: each create, mkdir, rename, link, unlink and rmdir since the last ``fsync`` of the
  directory holding the entry (for a rename: of either directory, since a rename is one atomic change) is an
  undo record too. Unlinked or overwritten files are moved to ``BASE/stash`` until that fsync, so that they
  can come back.

A *power cut* (``cut`` on the control socket, sent once the processes are SIGKILLed and reaped) rolls a subtree
back to its durable image: it undoes the directory changes and, file by file, the unsynced writes, each file at
random (seeded) in one of three ways a disk really fails:

* ``drop`` -- every write since the last fsync is lost;
* ``torn`` -- the first few unsynced writes reached the disk in order, the next one only up to a 512-byte
  sector boundary, the rest not at all;
* ``zeros`` -- as ``torn``, but a write that extended the file leaves its size extended and the sectors past the
  tear read as zeros (what a filesystem that logged the new size before the data shows after a crash).

Sectors are not reordered within a file (SQLite's crash tests also scramble them): a record made durable by one
fsync is either whole or not there, which is what Harbour's logs rely on; a scrambled middle would be a disk
fault, which ``wal.iter_records`` reports as corruption.

Requests that the kernel still delivers for a killed process after the cut are refused (its pid is on the cut's
list, or its thread no longer exists), so nothing a dead writer started lands after the rollback. SQLite's
``-shm`` files are not journaled: they are never fsync'd, and the first connection after a crash rebuilds them
from the WAL (SQLite's own rule).

The same control socket injects faults: the Nth ``write``/``fsync``/``rename``/... under a path fails with EIO or
ENOSPC (once, a few times, or until cleared), before it changes anything.

Why FUSE and not an in-process interposer: the edge and the hub run as the real processes the ship and the
office run, and SQLite's C-level writes and fsyncs pass through the same layer as Harbour's own, so the cut
covers the ledgers exactly (``PRAGMA synchronous`` and all) without modelling SQLite.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import logging
import os
import random
import socket
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mfusepy as fuse

SECTOR_BYTES = 512
"""The unit a disk writes atomically (a 4Kn disk writes 4096, which tears less often: 512 is the harsher)."""

NOT_JOURNALED_SUFFIXES = ("-shm",)
"""SQLite's shared-memory index: never fsync'd, rebuilt from the WAL by the first connection after a crash."""

CUT_MODES = ("drop", "drop", "torn", "zeros")
"""How a file with unsynced writes comes back after a cut, drawn per file (drop twice as likely)."""

FAULT_OPS = frozenset({"write", "fsync", "fsyncdir", "rename", "create", "mkdir", "unlink", "truncate"})


@dataclass
class Undo:
    """One unsynced change of a file's data: the bytes at ``offset`` it overwrote, and the size before it."""

    offset: int
    old: bytes
    old_size: int
    new_end: int  # end of the new data; for a truncate, the new size
    truncate: bool = False


@dataclass
class FileJournal:
    fd: int  # our own read-write descriptor of the file: undo works whatever its name is by then
    path: str
    undo: list[Undo] = field(default_factory=list)


@dataclass
class NameChange:
    kind: str  # create, mkdir, rename, link, unlink, rmdir
    path: str
    source: str = ""  # rename: the old name
    stash: str = ""  # what the change removed (an unlinked or overwritten file), kept until durable
    dirs: tuple[str, ...] = ()  # fsync of any of these makes it durable
    durable: bool = False


@dataclass
class Fault:
    op: str
    prefix: str
    skip: int  # calls to let through first
    error: int
    times: int  # -1: until cleared
    fired: int = 0


def _within(path: str, prefix: str) -> bool:
    """``path`` is ``prefix`` or below it (``/edge`` holds ``/edge/wal``, not ``/edge-stderr.log``)."""
    return prefix == "/" or not path or path == prefix or path.startswith(prefix.rstrip("/") + "/")


def _parent(path: str) -> str:
    return os.path.dirname(path.rstrip("/")) or "/"


class PowerCutFS(fuse.Operations):
    use_ns = True

    def __init__(self, base: Path) -> None:
        self.root = str(base / "root")
        self.stash = str(base / "stash")
        os.makedirs(self.root, exist_ok=True)
        os.makedirs(self.stash, exist_ok=True)
        self._mutex = threading.RLock()
        self.files: dict[int, FileJournal] = {}  # by inode
        self.names: list[NameChange] = []
        self.faults: list[Fault] = []
        self.dead: set[int] = set()
        self._stash_ids = itertools.count()
        self.counts = {"writes": 0, "fsyncs": 0, "dir_fsyncs": 0, "cuts": 0}

    # -- helpers ------------------------------------------------------------------------------------

    def _real(self, path: str) -> str:
        return self.root + path

    def _check(self, op: str, path: str | None) -> None:
        """Refuse requests of killed processes, and fire an armed fault (before anything changes)."""
        pid = fuse.fuse_get_context()[2]  # the calling thread's id
        if pid in self.dead or not os.path.exists(f"/proc/{pid}"):
            raise fuse.FuseOSError(errno.EIO)  # a killed process's request that reached us late
        for fault in self.faults:
            if fault.op == op and _within(path or "/", fault.prefix) and fault.times != 0:
                if fault.skip > 0:
                    fault.skip -= 1
                    continue
                fault.times -= 1 if fault.times > 0 else 0
                fault.fired += 1
                raise fuse.FuseOSError(fault.error)

    def _journal(self, fd: int, path: str | None) -> FileJournal | None:
        st = os.fstat(fd)
        journal = self.files.get(st.st_ino)
        if journal is None:
            if path is not None and path.endswith(NOT_JOURNALED_SUFFIXES):
                return None
            own = os.open(f"/proc/self/fd/{fd}", os.O_RDWR)
            journal = self.files[st.st_ino] = FileJournal(own, path or "")  # "": unlinked, in every cut's scope
        elif path is not None:
            journal.path = path
        return journal

    def _record(self, fd: int, path: str | None, offset: int, end: int, truncate: bool = False) -> None:
        journal = self._journal(fd, path)
        if journal is None:
            return
        size = os.fstat(journal.fd).st_size
        start, stop = (end, size) if truncate else (offset, min(end, size))
        old = os.pread(journal.fd, stop - start, start) if stop > start else b""
        journal.undo.append(Undo(start, old, size, end, truncate))

    def _stash(self, real: str) -> str:
        target = os.path.join(self.stash, str(next(self._stash_ids)))
        os.rename(real, target)
        return target

    # -- reading ------------------------------------------------------------------------------------

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        st = os.fstat(fh) if fh is not None else os.lstat(self._real(path))
        keys = ("st_mode", "st_ino", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime_ns", "st_mtime_ns",
                "st_ctime_ns")
        found = {key.replace("_ns", ""): getattr(st, key) for key in keys}
        found["st_blocks"] = st.st_blocks
        return found

    def readdir(self, path: str, fh: int) -> list[tuple[str, dict[str, int], int]]:
        # With use_ino an entry needs its inode number: readers skip entries whose d_ino is 0.
        return [(entry.name, {"st_mode": entry.stat(follow_symlinks=False).st_mode, "st_ino": entry.inode()}, 0)
                for entry in os.scandir(self._real(path))]

    def readlink(self, path: str) -> str:
        return os.readlink(self._real(path))

    def access(self, path: str, amode: int) -> int:
        if not os.access(self._real(path), amode):
            raise fuse.FuseOSError(errno.EACCES)
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        st = os.statvfs(self._real(path))
        return {key: getattr(st, key) for key in ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail",
                                                  "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")}

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return os.pread(fh, size, offset)

    # -- files --------------------------------------------------------------------------------------

    def open(self, path: str, flags: int) -> int:
        with self._mutex:
            self._check("open", path)
            if flags & os.O_ACCMODE == os.O_WRONLY:
                flags = flags & ~os.O_ACCMODE | os.O_RDWR
            fd = os.open(self._real(path), flags & ~(os.O_TRUNC | os.O_APPEND | os.O_CREAT))
            if flags & os.O_TRUNC:
                self._record(fd, path, 0, 0, truncate=True)
                os.ftruncate(fd, 0)
            return fd

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        with self._mutex:
            self._check("create", path)
            real = self._real(path)
            existed = os.path.lexists(real)
            fd = os.open(real, os.O_CREAT | os.O_RDWR, mode)
            if not existed:
                self.names.append(NameChange("create", path, dirs=(_parent(path),)))
            return fd

    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        with self._mutex:
            self._check("write", path)
            self._record(fh, path, offset, offset + len(data))
            self.counts["writes"] += 1
            return os.pwrite(fh, data, offset)

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        with self._mutex:
            self._check("truncate", path)
            fd = fh if fh is not None else os.open(self._real(path), os.O_RDWR)
            try:
                self._record(fd, path, length, length, truncate=True)
                os.ftruncate(fd, length)
            finally:
                if fh is None:
                    os.close(fd)
            return 0

    def fsync(self, path: str | None, datasync: int, fh: int) -> int:
        with self._mutex:
            self._check("fsync", path)
            self.counts["fsyncs"] += 1
            journal = self.files.pop(os.fstat(fh).st_ino, None)
            if journal is not None:
                os.close(journal.fd)
            return 0

    def flush(self, path: str | None, fh: int) -> int:
        return 0

    def release(self, path: str | None, fh: int) -> int:
        os.close(fh)
        return 0

    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._real(path), mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        os.lchown(self._real(path), uid, gid)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        os.utime(self._real(path), ns=times, follow_symlinks=False)
        return 0

    # -- directories --------------------------------------------------------------------------------

    def fsyncdir(self, path: str | None, datasync: int, fh: int) -> int:
        with self._mutex:
            self._check("fsyncdir", path)
            self.counts["dir_fsyncs"] += 1
            for change in self.names:
                if not change.durable and path in change.dirs:
                    change.durable = True
            self._forget_durable_names()
            return 0

    def _forget_durable_names(self) -> None:
        """A durable change can never be undone: drop it (and what it stashed) once nothing before it in the
        journal is still pending, so that undo order stays exact."""
        while self.names and self.names[0].durable:
            change = self.names.pop(0)
            if change.stash:
                _remove(change.stash)

    def mkdir(self, path: str, mode: int) -> int:
        with self._mutex:
            self._check("mkdir", path)
            os.mkdir(self._real(path), mode)
            self.names.append(NameChange("mkdir", path, dirs=(_parent(path),)))
            return 0

    def rmdir(self, path: str) -> int:
        with self._mutex:
            self._check("unlink", path)
            os.rmdir(self._real(path))
            self.names.append(NameChange("rmdir", path, dirs=(_parent(path),)))
            return 0

    def unlink(self, path: str) -> int:
        with self._mutex:
            self._check("unlink", path)
            stash = self._stash(self._real(path))
            self.names.append(NameChange("unlink", path, stash=stash, dirs=(_parent(path),)))
            return 0

    def rename(self, old: str, new: str) -> int:
        with self._mutex:
            self._check("rename", new)
            real_new = self._real(new)
            stash = ""
            if os.path.lexists(real_new) and not os.path.isdir(real_new):
                stash = os.path.join(self.stash, str(next(self._stash_ids)))
                os.link(real_new, stash)  # the overwritten file, should the rename be undone
            os.rename(self._real(old), real_new)
            self.names.append(NameChange("rename", new, source=old, stash=stash, dirs=(_parent(old), _parent(new))))
            for journal in self.files.values():
                if journal.path == old:
                    journal.path = new
            return 0

    def link(self, target: str, source: str) -> int:
        with self._mutex:
            self._check("create", target)
            os.link(self._real(source), self._real(target))
            self.names.append(NameChange("link", target, dirs=(_parent(target),)))
            return 0

    def symlink(self, target: str, source: str) -> int:
        with self._mutex:
            self._check("create", target)
            os.symlink(source, self._real(target))
            self.names.append(NameChange("create", target, dirs=(_parent(target),)))
            return 0

    # -- the power cut ------------------------------------------------------------------------------

    def cut(self, prefix: str, seed: int, pids: list[int]) -> dict[str, Any]:
        """Roll everything under ``prefix`` back to its durable image (see the module docstring)."""
        with self._mutex:
            self.dead.update(pids)
            rng = random.Random(seed)
            report = {"files": 0, "dropped_writes": 0, "torn": 0, "zeros": 0, "names_undone": 0}
            for ino, journal in sorted(self.files.items()):
                if not _within(journal.path, prefix):
                    continue
                del self.files[ino]
                mode = rng.choice(CUT_MODES)
                report["files"] += 1
                report["dropped_writes"] += _roll_back(journal, mode, rng)
                report[mode] = report.get(mode, 0) + 1
                os.close(journal.fd)
            kept: list[NameChange] = []
            for change in reversed(self.names):
                if _within(change.path, prefix) or (change.source and _within(change.source, prefix)):
                    if not change.durable:
                        self._undo_name(change)
                        report["names_undone"] += 1
                    elif change.stash:
                        _remove(change.stash)
                else:
                    kept.append(change)
            self.names = kept[::-1]
            self.counts["cuts"] += 1
            return report

    def _undo_name(self, change: NameChange) -> None:
        real = self._real(change.path)
        with contextlib.suppress(FileNotFoundError):
            if change.kind in ("create", "link"):
                os.unlink(real)
            elif change.kind == "mkdir":
                _remove(real)
            elif change.kind == "rmdir":
                os.makedirs(real, exist_ok=True)
            elif change.kind == "unlink":
                os.rename(change.stash, real)
            elif change.kind == "rename":
                if os.path.lexists(real):
                    os.makedirs(os.path.dirname(self._real(change.source)), exist_ok=True)
                    os.rename(real, self._real(change.source))
                if change.stash:
                    os.rename(change.stash, real)

    def fault(self, op: str, prefix: str, nth: int, error: int, times: int) -> None:
        if op not in FAULT_OPS:
            raise ValueError(f"unknown operation {op!r}; one of {sorted(FAULT_OPS)}")
        with self._mutex:
            self.faults.append(Fault(op, prefix, nth - 1, error, times))

    def clear_faults(self) -> int:
        with self._mutex:
            fired = sum(f.fired for f in self.faults)
            self.faults = []
            return fired


def _roll_back(journal: FileJournal, mode: str, rng: random.Random) -> int:
    """Undo a file's unsynced writes as ``mode`` says; returns how many were lost (wholly or in part)."""
    undo = journal.undo
    keep = 0 if mode == "drop" or not undo else rng.randrange(len(undo))
    for entry in reversed(undo[keep + (mode != "drop"):]):
        _undo(journal.fd, entry)
    if mode != "drop" and undo:
        _tear(journal.fd, undo[keep], mode, rng)
    return len(undo) - keep


def _undo(fd: int, entry: Undo) -> None:
    if entry.old:
        os.pwrite(fd, entry.old, entry.offset)
    os.ftruncate(fd, entry.old_size)


def _tear(fd: int, entry: Undo, mode: str, rng: random.Random) -> None:
    """The write reached the disk up to a sector boundary inside it (or not at all)."""
    first = -(-max(entry.offset, 1) // SECTOR_BYTES) * SECTOR_BYTES
    bounds = range(first, entry.new_end, SECTOR_BYTES)
    if entry.truncate or not bounds:
        _undo(fd, entry)
        return
    cut = rng.choice(bounds)
    restored = entry.old[cut - entry.offset:]
    if restored:
        os.pwrite(fd, restored, cut)
    if mode == "zeros" and entry.new_end > entry.old_size:
        start = max(cut, entry.old_size)
        os.pwrite(fd, bytes(entry.new_end - start), start)
        os.ftruncate(fd, entry.new_end)
    else:
        os.ftruncate(fd, max(entry.old_size, cut))


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        import shutil

        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def serve_control(fs: PowerCutFS, path: str) -> None:
    """One JSON request per line on a Unix socket, one JSON answer per line."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(4)

    def handle(connection: socket.socket) -> None:
        with connection, connection.makefile("rw") as stream:
            for line in stream:
                request = json.loads(line)
                try:
                    answer = {"ok": True, "result": dispatch(fs, request)}
                except Exception as error:  # answered, not fatal: the harness shows it
                    answer = {"ok": False, "error": f"{type(error).__name__}: {error}"}
                stream.write(json.dumps(answer) + "\n")
                stream.flush()

    def accept() -> None:
        while True:
            connection, _ = server.accept()
            threading.Thread(target=handle, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


def dispatch(fs: PowerCutFS, request: dict[str, Any]) -> Any:
    command = request["cmd"]
    if command == "cut":
        return fs.cut(request["prefix"], request["seed"], request.get("pids", []))
    if command == "fault":
        fs.fault(request["op"], request.get("prefix", "/"), request.get("nth", 1),
                 getattr(errno, request.get("error", "EIO")), request.get("times", 1))
        return None
    if command == "clear_faults":
        return fs.clear_faults()
    if command == "stats":
        with fs._mutex:
            return {**fs.counts, "unsynced_files": len(fs.files),
                    "pending_names": sum(not c.durable for c in fs.names)}
    raise ValueError(f"unknown command {command!r}")


def main(argv: list[str]) -> None:
    base, mount, control = argv
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fs = PowerCutFS(Path(base))
    serve_control(fs, control)
    # No kernel caching of names or attributes: a cut changes the files under the kernel's feet. hard_remove:
    # libfuse must not rename an unlinked open file to .fuse_hidden* (that would be a rename of its own).
    fuse.FUSE(fs, mount, foreground=True, nothreads=True, attr_timeout=0, entry_timeout=0, negative_timeout=0,
              hard_remove=True, use_ino=True, fsname="powercut")


if __name__ == "__main__":
    main(sys.argv[1:])
