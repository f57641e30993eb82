"""A hub process frozen inside a write transaction does not stop the cluster's writes (``hub.postgres``).

Every serial write transaction holds the cluster's one write lock. A process stopped with SIGSTOP while holding
it (a paused VM, a swap storm) kept it for as long as it stayed frozen, and every other process's writes failed
after ``LOCK_TIMEOUT``: commits, registrations, reports, the whole fleet. The server now ends a session idle in
a transaction, so the lock is free after ``IDLE_IN_TRANSACTION_TIMEOUT`` and the frozen work rolls back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.integration

FROZEN_AFTER_SECONDS = 1
"""The writer's idle-in-transaction bound in this test (the hub's is 15 s), so the test takes seconds."""

WRITER = """
import sys
import hub.postgres as postgres
postgres.IDLE_IN_TRANSACTION_TIMEOUT = sys.argv[2]
db = postgres.PostgresDatabase(sys.argv[1])
try:
    with db.write() as conn:
        conn.execute("INSERT INTO probe (who) VALUES ('frozen')")
        print("inside", flush=True)
        sys.stdin.readline()  # the test freezes us here, then thaws us and sends a line
        conn.execute("INSERT INTO probe (who) VALUES ('thawed')")
    print("committed", flush=True)
except Exception as error:
    print(f"ended: {type(error).__name__}: {str(error).splitlines()[0]}", flush=True)
"""


def test_a_writer_frozen_inside_a_transaction_frees_the_write_lock(postgres_url):
    from hub.postgres import PostgresDatabase

    db = PostgresDatabase(postgres_url)
    db.db.execute("CREATE TABLE probe (who TEXT)")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, postgres_url, f"{FROZEN_AFTER_SECONDS}s"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "inside"
        os.kill(writer.pid, signal.SIGSTOP)
        started = time.monotonic()
        with db.write() as conn:  # waits for the write lock: LockNotAvailable after 10 s if the frozen one kept it
            conn.execute("INSERT INTO probe (who) VALUES ('other')")
        waited = time.monotonic() - started
        os.kill(writer.pid, signal.SIGCONT)
        writer.stdin.write("go on\n")
        writer.stdin.flush()
        outcome = writer.stdout.readline().strip()
    finally:
        os.kill(writer.pid, signal.SIGCONT)
        writer.kill()
        writer.wait()
        db.close()

    assert waited < FROZEN_AFTER_SECONDS + 5, f"the other process waited {waited:.1f} s for the write lock"
    assert outcome.startswith("ended:"), f"the frozen writer's transaction went on after it woke: {outcome}"
    db = PostgresDatabase(postgres_url)
    try:
        rows = [row[0] for row in db.db.execute("SELECT who FROM probe ORDER BY who").fetchall()]
    finally:
        db.close()
    assert rows == ["other"], "the frozen transaction's rows must roll back, the other process's stay"


def test_a_request_that_cannot_get_the_write_lock_is_answered_503_and_retried(tmp_path, postgres_url):
    """While another process holds the write lock past ``LOCK_TIMEOUT``, a chunk whose commit needs it gets a
    retryable 503 with Retry-After (was a 500 and a traceback per request), and the retry commits it."""
    import psycopg

    from hub.postgres import WRITE_LOCK_KEY

    from .conftest import Hub, chain, free_port

    hub = Hub(tmp_path / "hub", free_port(), tmp_path / "hub.log", places=("--ledger", postgres_url)).start()
    try:
        token = hub.add_site("ship-1")
        segment = chain("ship-1", "events", 1)[0]
        assert hub.create(token, segment).status == 201
        with psycopg.connect(postgres_url) as holder:  # a transaction: the lock is held until it ends
            holder.execute("SELECT pg_advisory_xact_lock(%s)", [WRITE_LOCK_KEY])
            answer = hub.patch(token, segment.key, 0, segment.data)
            holder.rollback()
        assert answer.status == 503, (answer.status, answer.body)
        assert answer.headers.get("retry-after") == "2" and b"ledger is busy" in answer.body, answer
        metrics = hub.request("GET", "/metrics").body.decode()
        assert 'harbour_hub_rejections_total{code="unavailable"} 1.0' in metrics  # what HarbourLedgerBusy watches
        offset = hub.head(token, segment.key).offset
        answer = hub.patch(token, segment.key, offset, segment.data[offset:])
        assert answer.status == 204 and answer.committed, (answer.status, answer.body)
        log = hub.log()
        assert "Traceback" not in log and token not in log, log[-3000:]  # background passes too (a warning each)
        assert "the ledger is busy or out of reach" in log
    finally:
        hub.stop()
