"""SQLite settings the ledger relies on, rollback of failed write transactions, and which errors mean "busy"."""

from __future__ import annotations

import sqlite3
import threading

import psycopg
import pytest

from hub.db import Database, LedgerUnavailable, is_ledger_busy


def test_wal_full_sync_and_rollback(tmp_path):
    database = Database(tmp_path / "x.db")
    db = database.db
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    db.execute("CREATE TABLE t (v INTEGER)")
    with pytest.raises(RuntimeError), database.write() as tx:
        tx.execute("INSERT INTO t VALUES (1)")
        raise RuntimeError("boom")
    with database.write() as tx:
        tx.execute("INSERT INTO t VALUES (2)")
    seen = []
    worker = threading.Thread(target=lambda: seen.append(database.db.execute("SELECT v FROM t").fetchall()))
    worker.start()
    worker.join()
    assert seen == [[(2,)]]  # another thread, its own connection, sees the committed row only
    database.close()


def test_a_snapshot_sees_one_state_while_another_thread_commits(tmp_path):
    database = Database(tmp_path / "x.db")
    with database.write() as tx:
        tx.execute("CREATE TABLE t (v INTEGER)")
        tx.execute("INSERT INTO t VALUES (1)")

    def commit_another() -> None:
        with database.write() as other:
            other.execute("INSERT INTO t VALUES (2)")

    with database.snapshot() as db:
        assert db.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 1
        writer = threading.Thread(target=commit_another)
        writer.start()
        writer.join()
        assert db.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 1  # still the state it started with
    assert database.db.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 2
    database.close()


def _sqlite_error(path, statement: str) -> sqlite3.OperationalError:
    """The error SQLite itself raises for ``statement`` while another connection holds the write lock."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE IF NOT EXISTS t (v INTEGER)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute(statement)
    except sqlite3.OperationalError as error:
        return error
    finally:
        other.close()
        holder.close()
    raise AssertionError(f"{statement} did not fail")


def test_sqlite_busy_is_busy_and_other_operational_errors_are_not(tmp_path):
    assert is_ledger_busy(_sqlite_error(tmp_path / "x.db", "INSERT INTO t VALUES (1)"))  # database is locked
    assert not is_ledger_busy(_sqlite_error(tmp_path / "x.db", "SELECT * FROM no_such_table"))
    assert not is_ledger_busy(sqlite3.OperationalError("database table is locked"))  # SQLITE_LOCKED: a bug


@pytest.mark.parametrize("error, busy", [
    (psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"), True),
    (psycopg.errors.IdleInTransactionSessionTimeout("terminating connection"), True),
    (psycopg.errors.AdminShutdown("terminating connection due to administrator command"), True),
    (psycopg.errors.ConnectionFailure("server closed the connection"), True),
    (psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly"), True),
    (psycopg.errors.UniqueViolation("duplicate key"), False),
    (psycopg.errors.UndefinedTable("relation does not exist"), False),
    (psycopg.errors.QueryCanceled("canceling statement due to statement timeout"), False),  # repeats on retry
    (psycopg.errors.ProtocolViolation("protocol violation"), False),
    (psycopg.errors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"), True),
    (LedgerUnavailable("cannot reach the ledger at postgresql://harbour@db:5432/harbour"), True),
    (ValueError("locked"), False),
])
def test_only_a_ledger_out_of_reach_for_a_moment_is_busy(error, busy):
    assert is_ledger_busy(error) is busy
