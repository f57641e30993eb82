"""The hub cluster's test servers (scenarios/services.py): a real PostgreSQL and a real HAProxy on loopback.

Besides "they start", these pin the two properties the hub cluster is built on: a PostgreSQL advisory lock
dies with the process that held it (and only then: a frozen holder keeps it), and the balancer spreads the
requests of one client connection over the hubs and routes around a killed hub without failing a request.
"""

from __future__ import annotations

import http.client
import os
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from scenarios.services import HAPROXY, PostgresServer, example_haproxy_config, haproxy_config

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

LOCK_RELEASE_LIMIT_SECONDS = 2.0
"""A SIGKILLed holder's lock is free within milliseconds on loopback (the kernel closes its socket at once);
the margin is for a loaded CI machine."""

LOCK_HOLDER = """
import sys, time, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as connection:
    connection.execute("SELECT pg_advisory_lock(42)")
    print("locked", flush=True)
    time.sleep(600)
"""

NAME_SERVER = """
import http.server, os, sys, time
name, hold_flag = sys.argv[1], sys.argv[2]

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/hold":  # answer only once the test removes the flag (or never: it kills us)
            print("holding", flush=True)
            while os.path.exists(hold_flag):
                time.sleep(0.01)
        body = b"ok" if self.path == "/healthz" else name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

class Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # haproxy resets its health check connections

server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def _read_line(process: subprocess.Popen, timeout: float = 30.0) -> str:
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, f"process {process.args} printed nothing within {timeout} s"
    return process.stdout.readline().strip()


def _spawn(script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True)


@pytest.fixture
def name_servers(tmp_path):
    """Three tiny HTTP servers, each a process answering its name at / and 200 at /healthz; by name:
    (address, process). /hold answers only once ``tmp_path / "hold"`` is gone."""
    servers = {}
    try:
        for name in ("alpha", "bravo", "charlie"):
            process = _spawn(NAME_SERVER, name, str(tmp_path / "hold"))
            servers[name] = (f"127.0.0.1:{_read_line(process)}", process)
        yield servers
    finally:
        for _, process in servers.values():
            process.kill()
            process.wait()


def _get(connection: http.client.HTTPConnection, path: str = "/") -> tuple[int, str]:
    connection.request("GET", path)
    response = connection.getresponse()
    return response.status, response.read().decode()


def test_the_shipped_haproxy_example_is_what_the_balancer_runs():
    shipped = (ROOT / "docs" / "examples" / "haproxy.cfg").read_text()
    assert shipped == example_haproxy_config(), \
        "docs/examples/haproxy.cfg is stale: python -m scenarios.services > docs/examples/haproxy.cfg"
    check = subprocess.run([str(HAPROXY), "-c", "-f", str(ROOT / "docs" / "examples" / "haproxy.cfg")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "WARNING" not in check.stdout + check.stderr


def test_the_balancer_config_has_no_affinity():
    config = haproxy_config("127.0.0.1:1", ["127.0.0.1:2", "127.0.0.1:3"])
    assert "balance roundrobin" in config and "option http-server-close" in config
    directives = "\n".join(line for line in config.splitlines() if not line.lstrip().startswith("#"))
    assert not any(word in directives for word in ("cookie", "stick", "hash", "prefer-last-server"))
    assert "server hub1 127.0.0.1:2\n    server hub2 127.0.0.1:3\n" in config


def test_a_throwaway_postgres_server_starts_answers_and_leaves_nothing():
    began = time.monotonic()
    with PostgresServer() as server:
        started = time.monotonic() - began
        data_dir, port = server.dir, server.port
        with psycopg.connect(server.url(), connect_timeout=10) as connection:
            settings = {name: connection.execute(f"SHOW {name}").fetchone()[0]
                        for name in ("fsync", "max_connections", "listen_addresses", "server_version")}
        assert settings["fsync"] == "on" and settings["max_connections"] == "300"
        assert settings["listen_addresses"] == "127.0.0.1" and settings["server_version"].startswith("15.")
        stopping = time.monotonic()
    stopped = time.monotonic() - stopping
    print(f"PostgreSQL: started in {started:.2f} s, stopped and removed in {stopped:.2f} s")
    assert not data_dir.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=2)


def test_each_test_database_is_its_own(postgres_server, postgres_url):
    other = postgres_server.create_database("services_isolation_other")
    try:
        with psycopg.connect(postgres_url, autocommit=True) as mine, psycopg.connect(other) as theirs:
            mine.execute("CREATE TABLE ledger (seq int)")
            mine.execute("INSERT INTO ledger VALUES (1)")
            assert mine.execute("SELECT count(*) FROM ledger").fetchone() == (1,)
            assert theirs.execute("SELECT to_regclass('ledger')").fetchone() == (None,)
    finally:
        postgres_server.drop_database("services_isolation_other")
    with pytest.raises(ValueError, match="database name"):
        postgres_server.create_database("Robert'); DROP TABLE students;--")


def _try_lock(connection: psycopg.Connection) -> bool:
    return connection.execute("SELECT pg_try_advisory_lock(42)").fetchone()[0]


def test_an_advisory_lock_dies_with_the_process_that_held_it(postgres_url):
    holder = _spawn(LOCK_HOLDER, postgres_url)
    try:
        assert _read_line(holder) == "locked"
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            assert not _try_lock(connection)
            killed = time.monotonic()
            holder.kill()  # SIGKILL: no goodbye to the server; the kernel closes the socket
            while not _try_lock(connection):
                assert time.monotonic() - killed < LOCK_RELEASE_LIMIT_SECONDS, "the dead holder's lock is kept"
                time.sleep(0.002)
            released = time.monotonic() - killed
    finally:
        holder.kill()
        holder.wait()
    print(f"advisory lock free {released * 1000:.1f} ms after SIGKILL of its holder")


def test_a_frozen_holder_keeps_its_advisory_lock(postgres_url):
    """A stopped (or partitioned) holder's connection stays open, so its lock stays held: the hub cluster
    cannot take a lock's release to mean a hub is gone; only the holder's death (or its socket's) frees it."""
    holder = _spawn(LOCK_HOLDER, postgres_url)
    try:
        assert _read_line(holder) == "locked"
        os.kill(holder.pid, signal.SIGSTOP)
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            frozen = time.monotonic()
            while time.monotonic() - frozen < 1.5:
                assert not _try_lock(connection)
                time.sleep(0.1)
            holder.kill()
            holder.wait()
            killed = time.monotonic()
            while not _try_lock(connection):
                assert time.monotonic() - killed < LOCK_RELEASE_LIMIT_SECONDS
                time.sleep(0.002)
    finally:
        holder.kill()
        holder.wait()


def test_one_keep_alive_connection_is_spread_round_robin(name_servers, balancer):
    proxy = balancer([address for address, _ in name_servers.values()])
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    answers = [_get(connection)]
    sock = connection.sock
    for _ in range(8):
        answers.append(_get(connection))
        assert connection.sock is sock, "the balancer closed the client's keep-alive connection"
    connection.close()
    assert {status for status, _ in answers} == {200}
    assert Counter(name for _, name in answers) == {"alpha": 3, "bravo": 3, "charlie": 3}
    assert all(len({name for _, name in answers[i:i + 3]}) == 3 for i in range(7)), answers


def test_a_killed_backend_fails_no_request_and_is_taken_out(name_servers, balancer):
    proxy = balancer([address for address, _ in name_servers.values()])
    dead_address, dead = name_servers["bravo"]
    for address, _ in name_servers.values():
        proxy.wait_for_status(address, "UP")
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    killed = time.monotonic()
    dead.kill()
    slowest, served = 0.0, Counter()
    while proxy.backend_stats()[dead_address]["status"] != "DOWN":  # the requests before the checks see it
        assert time.monotonic() - killed < 5, "the dead backend is not taken out by the health checks"
        sent = time.monotonic()
        status, name = _get(connection)
        slowest = max(slowest, time.monotonic() - sent)
        assert status == 200
        served[name] += 1
    taken_out = time.monotonic() - killed
    assert served["alpha"] and served["charlie"] and not served["bravo"]
    before = proxy.backend_stats()[dead_address]
    after_down = Counter(_get(connection)[1] for _ in range(30))
    after = proxy.backend_stats()[dead_address]
    assert after_down == {"alpha": 15, "charlie": 15}
    assert int(before["wredis"]) > 0, "no request met the dead backend before it was taken out"
    counters = ("connect", "stot", "wredis")
    assert [after[c] for c in counters] == [before[c] for c in counters], "a request went to the dead one"
    print(f"haproxy: killed backend DOWN after {taken_out:.2f} s; {served.total()} requests meanwhile, none "
          f"failed, slowest {slowest * 1000:.1f} ms; {before['wredis']} of them met the dead one and were "
          "redispatched")


def test_a_backend_killed_during_a_request_has_it_answered_by_another(name_servers, balancer, tmp_path):
    proxy = balancer([address for address, _ in name_servers.values()])
    (tmp_path / "hold").touch()
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    connection.request("GET", "/hold")
    processes = {process.stdout: (name, process) for name, (_, process) in name_servers.items()}
    ready, _, _ = select.select(list(processes), [], [], 10)
    assert len(ready) == 1, "exactly one backend should hold the request"
    victim, process = processes[ready[0]]
    assert process.stdout.readline().strip() == "holding"
    process.kill()  # the request is sent, no byte of answer: haproxy sees an empty response and retries
    process.wait()
    (tmp_path / "hold").unlink()
    response = connection.getresponse()
    assert response.status == 200
    assert response.read().decode() in set(name_servers) - {victim}
