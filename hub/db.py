"""Opening the hub's SQLite database the same way everywhere.

WAL mode lets ``harbour hub add-site``/``status``/``query`` read and write while ``hub run`` is
serving; ``synchronous=FULL`` makes each commit survive power loss, which the exactly-once ledger
and the durable upload offsets (G2, G3) rely on. Each thread gets its own connection: sqlite3
connections must not be shared between threads, and the hub does its SQLite work in a thread pool
so that the event loop never waits on a disk flush.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import sqlite_utils

BUSY_TIMEOUT_MS = 10_000
"""How long a writer waits for another one (e.g. an ``add-site`` run during a ledger commit). Commits
take milliseconds; ten seconds only expires when something is badly wrong, and then says so."""


def connect(path: Path) -> sqlite_utils.Database:
    # check_same_thread=False only so that close() may run on the main thread after the workers stopped;
    # each connection is otherwise used by the one thread that opened it.
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return sqlite_utils.Database(conn)


class Database:
    """Thread-local connections to one SQLite file, plus a write-transaction helper."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._all: list[sqlite_utils.Database] = []
        self._guard = threading.Lock()

    @property
    def db(self) -> sqlite_utils.Database:
        db = getattr(self._local, "db", None)
        if db is None:
            db = connect(self.path)
            self._local.db = db
            with self._guard:
                self._all.append(db)
        return db

    def write(self) -> AbstractContextManager[sqlite_utils.Database]:
        """One write transaction. BEGIN IMMEDIATE takes the write lock up front, so a read followed
        by a write inside it cannot be invalidated by another writer in between."""
        return self._transaction("BEGIN IMMEDIATE")

    def snapshot(self) -> AbstractContextManager[sqlite_utils.Database]:
        """One read transaction: every SELECT in it sees the same committed state (WAL keeps that snapshot), so
        figures read by several statements agree with each other even while writers commit."""
        return self._transaction("BEGIN")

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite_utils.Database]:
        db = self.db
        db.execute(begin)
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        with self._guard:
            for db in self._all:
                db.close()
            self._all.clear()
        self._local = threading.local()
