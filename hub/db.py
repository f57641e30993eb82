"""Opening the hub's ledger database the same way everywhere: the embedded SQLite file here, PostgreSQL for a
cluster in ``hub.postgres`` (``hub.layout.open_database`` picks by ``--ledger``). Both give the same small surface
(``LedgerDatabase``), so the ledger, registry, reports, history and sessions are written once, in the SQL the two
share (``upsert`` below; ``INSERT ... RETURNING``; no ``rowid``, no ``INSERT OR REPLACE``).

WAL mode lets ``harbour hub add-site``/``status``/``query`` read and write while ``hub run`` is
serving; ``synchronous=FULL`` makes each commit survive power loss, which the exactly-once ledger
and the durable upload offsets (G2, G3) rely on. Each thread gets its own connection: sqlite3
connections must not be shared between threads, and the hub does its SQLite work in a thread pool
so that the event loop never waits on a disk flush.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

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


class Connection(Protocol):
    """What callers use of a connection: ``execute`` with ``?`` placeholders, answering a DB-API cursor."""

    def execute(self, sql: str, parameters: Sequence[Any] = ...) -> Any: ...


class LedgerDatabase(Protocol):
    dialect: str  # "sqlite" or "postgresql": only schema upgrades of old SQLite files look at it

    @property
    def db(self) -> Connection: ...
    def write(self, *, serial: bool = True) -> AbstractContextManager[Connection]: ...
    def snapshot(self) -> AbstractContextManager[Connection]: ...
    def columns(self, table: str) -> list[str]: ...
    def tables(self) -> set[str]: ...
    def indexes(self) -> set[str]: ...
    def describe(self) -> str: ...
    def close(self) -> None: ...


def upsert(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    """``INSERT`` of ``columns`` that replaces the row holding the same ``key`` (SQLite and PostgreSQL alike)."""
    updates = ", ".join(f"{column} = excluded.{column}" for column in columns if column not in key)
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}")


def create_tables(database: LedgerDatabase, tables: dict[str, str]) -> None:
    """Create the ``tables`` (name -> column definitions) that do not exist yet, in one write transaction: one
    process at a time, because concurrent CREATEs collide on PostgreSQL. No write lock when all exist."""
    if not set(tables) <= database.tables():
        with database.write() as db:
            for name, columns in tables.items():
                db.execute(f"CREATE TABLE IF NOT EXISTS {name} ({columns})")


class Database:
    """Thread-local connections to one SQLite file, plus a write-transaction helper."""

    dialect = "sqlite"

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

    def write(self, *, serial: bool = True) -> AbstractContextManager[sqlite_utils.Database]:
        """One write transaction. BEGIN IMMEDIATE takes the write lock up front, so a read followed
        by a write inside it cannot be invalidated by another writer in between. ``serial=False`` (a transaction
        that only writes, with no decision on what it read) changes nothing here: SQLite has one writer anyway."""
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

    def columns(self, table: str) -> list[str]:
        """``table``'s column names; [] when it does not exist."""
        return [row[1] for row in self.db.execute(f"PRAGMA table_info({table})").fetchall()]

    def tables(self) -> set[str]:
        return self._names("table")

    def indexes(self) -> set[str]:
        return self._names("index")

    def _names(self, kind: str) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT name FROM sqlite_master WHERE type = ?", [kind]).fetchall()}

    def describe(self) -> str:
        return str(self.path)

    def close(self) -> None:
        with self._guard:
            for db in self._all:
                db.close()
            self._all.clear()
        self._local = threading.local()


class LedgerUnavailable(Exception):
    """The ledger database cannot be reached or opened; the message says where and what to check."""


BUSY_POSTGRES_STATES = {
    "55P03": "lock not available (not granted within LOCK_TIMEOUT)",
    "25P03": "idle in transaction session timeout (the server ended a frozen transaction)",
    "25006": "read-only transaction (a standby, briefly, during a failover)",
    "40001": "serialization failure",
    "40P01": "deadlock detected",
    "57P01": "admin shutdown",
    "57P02": "crash shutdown",
    "57P03": "cannot connect now (the server is starting)",
    "08000": "connection exception",
    "08001": "cannot establish a connection",
    "08003": "connection does not exist",
    "08006": "connection failure",
}
"""PostgreSQL errors that pass by themselves, by SQLSTATE. Not a statement timeout (57014) or a protocol
violation (08P01): those repeat on every retry and are bugs to see with their traceback."""


def is_ledger_busy(error: BaseException) -> bool:
    """Whether ``error`` is the ledger being out of reach for a moment (busy, restarting, a lost connection):
    the request is answered ``503`` with ``Retry-After``, not a ``500`` with a traceback per request."""
    if isinstance(error, LedgerUnavailable):  # a connection could not be made again (PostgreSQL down)
        return True
    if isinstance(error, sqlite3.OperationalError):  # another writer past BUSY_TIMEOUT_MS; not SQLITE_LOCKED (a bug)
        return getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY
    if not type(error).__module__.startswith("psycopg"):
        return False
    sqlstate = getattr(error, "sqlstate", None)
    if sqlstate:
        return sqlstate in BUSY_POSTGRES_STATES
    return any(kind.__name__ == "OperationalError" for kind in type(error).__mro__)  # no state: connection lost


def is_postgres_url(ledger: str | None) -> bool:
    return bool(ledger) and ledger.split("://", 1)[0] in ("postgresql", "postgres")

