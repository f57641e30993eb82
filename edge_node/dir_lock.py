"""One process per edge data directory: ``DATA/edge.lock``, held with ``flock`` for the life of the process.

Theory of operation. The write-ahead log, the sealer and the ledger all assume they are the only writer
of DATA: a second node that recovers a log the first is still appending to seals it and deletes it under
the first one's feet, and every row the first acknowledges afterwards is lost. So ``harbour edge run``
(and ``harbour edge release`` when no node runs) takes an exclusive, non-blocking ``flock`` on
``DATA/edge.lock`` before it reads or writes anything else there, and keeps it until it exits.

The kernel drops a ``flock`` when its file is closed -- on exit, on a crash, on SIGKILL -- so a lock file
left behind never blocks a restart. Its contents are only a description of the holder (pid, host, start
time, command, listen address), written so that a refused start can name the running process; plus a
token that a local ``harbour edge release`` shows the running node, proving it can read DATA (the file
is 0600). Readers (``status``, ``query``) take no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from .durable import make_dirs

LOCK_FILE = "edge.lock"
RUN_COMMAND = "harbour edge run"
RELEASE_COMMAND = "harbour edge release"

HOLDER_SETTLE_SECONDS = 0.5
"""A holder describes itself just after it takes the lock (after binding its port, microseconds to
milliseconds later); a refused process waits up to this long for the description before saying less."""
HOLDER_POLL_SECONDS = 0.02


@dataclass(frozen=True)
class LockHolder:
    """Who holds a data directory: what a refused process prints, and where ``release`` finds the node."""

    pid: int
    host: str
    started: float  # epoch seconds
    command: str  # e.g. "harbour edge run"
    listen: str | None = None  # HOST:PORT, once the node answers there
    token: str | None = None  # shown to the node by a local `harbour edge release`; never printed

    def __post_init__(self) -> None:
        if not isinstance(self.pid, int) or self.pid <= 0 or not self.command:
            raise ValueError(f"not a lock holder: pid {self.pid!r}, command {self.command!r}")

    def to_bytes(self) -> bytes:
        return (json.dumps(asdict(self), sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> LockHolder | None:
        """The holder a lock file describes, or None if it is empty or half written."""
        try:
            fields = json.loads(data)
            return cls(**fields)
        except (ValueError, TypeError):
            return None

    def describe(self) -> str:
        started = datetime.fromtimestamp(self.started, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        where = f"listening on {self.listen}" if self.listen else "not answering yet (starting up)"
        return f"`{self.command}` (pid {self.pid} on {self.host}, started {started}, {where})"

    def with_listen(self, listen: str) -> LockHolder:
        return replace(self, listen=listen)


class DataDirInUse(Exception):
    """Another process holds the data directory; nothing of it was read or changed."""

    def __init__(self, data_dir: Path, holder: LockHolder | None, hint: str) -> None:
        self.data_dir = data_dir
        self.holder = holder
        who = holder.describe() if holder else "another process (it has not described itself in the lock file)"
        super().__init__(f"{data_dir} is in use by {who}; nothing in it was read or changed -- {hint}")


class DataDirLock:
    """The held lock. ``record`` (re)writes the description; ``release`` (or process exit) frees it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: Path, hint: str = "stop it first") -> DataDirLock:
        """Take ``DATA/edge.lock`` (creating DATA if new) or raise DataDirInUse. Writes nothing yet: a
        start that then fails (its port is taken) leaves the directory as it found it."""
        make_dirs(data_dir)  # durable: a new DATA whose entry a power cut drops loses everything in it
        path = data_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataDirInUse(data_dir, settled_holder(path), hint) from None
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd)

    def record(self, holder: LockHolder) -> None:
        if self._fd is None:
            raise RuntimeError(f"{self.path} was released; record() needs the lock held")
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, holder.to_bytes(), 0)

    def release(self) -> None:
        """Free the lock. The file stays (removing it could race a process that just opened it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_holder(data_dir: Path) -> LockHolder | None:
    """What the lock file says, whoever wrote it (it may describe a process long gone)."""
    try:
        return LockHolder.from_bytes((data_dir / LOCK_FILE).read_bytes())
    except FileNotFoundError:
        return None


def running_holder(data_dir: Path) -> LockHolder | None:
    """The process the lock file describes, if it still runs (or runs on another host, where we cannot tell)."""
    holder = read_holder(data_dir)
    return holder if holder is not None and _alive(holder) else None


def this_host() -> str:
    return os.uname().nodename


def _alive(holder: LockHolder) -> bool:
    if holder.host != this_host():
        return True  # cannot tell from here; the lock says someone holds it
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def settled_holder(path: Path) -> LockHolder | None:
    """The live holder described in ``path``, waiting briefly while the file still describes nobody or
    a dead predecessor (the new holder has the lock but has not written yet)."""
    deadline = time.monotonic() + HOLDER_SETTLE_SECONDS
    while True:
        with contextlib.suppress(FileNotFoundError):
            holder = LockHolder.from_bytes(path.read_bytes())
            if holder is not None and _alive(holder):
                return holder
        if time.monotonic() >= deadline:
            return None
        time.sleep(HOLDER_POLL_SECONDS)
