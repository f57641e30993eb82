"""SQLite settings the ledger relies on, and rollback of failed write transactions."""

from __future__ import annotations

import threading

import pytest

from hub.db import Database


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
