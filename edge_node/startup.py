"""The first two steps of ``harbour edge run``, before anything heavy is imported or DATA is read.

(1) Take DATA's lock (``dir_lock``): a second node on DATA stops here, having read and changed nothing.
(2) Bind the listening socket: a taken port stops here too, with one line, before any recovery.
Then (3) the process describes itself in the lock file. Only the standard library is imported, so a
refused start answers in about a tenth of a second, not after pyarrow and aiohttp have loaded.

The runner does the rest (``runner.py``): open the ledger, recover, serve on the socket bound here.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .dir_lock import RUN_COMMAND, DataDirInUse, DataDirLock, LockHolder, this_host

log = logging.getLogger("harbour.edge.startup")

LISTEN_BACKLOG = 128
"""aiohttp's own default: connections that wait while the node finishes starting."""


class StartupError(Exception):
    """``edge run`` cannot start; one line for the operator, and DATA untouched."""


@dataclass(frozen=True)
class Claim:
    """What steps (1)-(3) hold: the lock, the bound socket, and the description in the lock file."""

    lock: DataDirLock
    sock: socket.socket
    holder: LockHolder

    @property
    def listen(self) -> str:
        """HOST:PORT actually bound (port 0 resolved)."""
        host, port = self.sock.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def serving(self) -> None:
        """The node answers now: add its address to the lock file, where `harbour edge release` looks. A disk
        that cannot take those few bytes (full, failing) must not stop a node that already holds acknowledged
        rows: it goes on serving (writes get 507 while the disk is full) and says what `release` will lack."""
        try:
            self.lock.record(self.holder.with_listen(self.listen))
        except OSError as error:
            log.warning("could not write this node's address into %s (%s): `harbour edge release` will not find "
                        "the running node until it restarts; free space on the ship's disk", self.lock.path,
                        os.strerror(error.errno) if error.errno else error)

    def release(self) -> None:
        self.sock.close()
        self.lock.release()


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound and listening on HOST:PORT (IPv4 first when a name has both), or StartupError."""
    try:
        found = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, address = sorted(found, key=lambda info: info[0] != socket.AF_INET)[0]
        return socket.create_server(address, family=family, backlog=LISTEN_BACKLOG)
    except OSError as error:
        reason = os.strerror(error.errno) if (error.errno or 0) > 0 else (error.strerror or str(error))
        if error.errno == errno.EADDRINUSE:
            hint = (f"another process has that port (`ss -ltnp 'sport = :{port}'` shows which): stop it, or "
                    f"choose another with --listen HOST:PORT")
        else:
            hint = "check --listen HOST:PORT (port 0 picks a free one)"
        raise StartupError(f"cannot listen on {host}:{port}: {reason.lower()}; no data was read or changed "
                           f"-- {hint}") from None


def claim(data_dir: Path, host: str, port: int, clock: Callable[[], float], token: str) -> Claim:
    """Steps (1)-(3), or StartupError. ``token`` goes into the lock file for `harbour edge release`."""
    try:
        lock = DataDirLock.acquire(data_dir, hint="stop that node first, or give this one a data directory of "
                                                  "its own")
    except DataDirInUse as error:
        raise StartupError(str(error)) from None
    except OSError as error:
        raise StartupError(f"cannot use {error.filename or data_dir}: {error.strerror or error}") from None
    try:
        sock = listening_socket(host, port)
    except StartupError:
        lock.release()
        raise
    holder = LockHolder(os.getpid(), this_host(), clock(), RUN_COMMAND, token=token)
    try:
        lock.record(holder)
    except OSError as error:
        sock.close()
        lock.release()
        raise StartupError(f"cannot write {lock.path}: {error.strerror or error}") from None
    return Claim(lock, sock, holder)
