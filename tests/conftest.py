"""Fixtures shared by the edge's and the hub's tests."""

from __future__ import annotations

import itertools
import re
from types import SimpleNamespace

import pyarrow as pa
import pytest


def _deep_struct(depth: int) -> pa.Array:
    """One row of a struct nested ``depth`` levels deep (the type rules allow 32)."""
    dtype, value = pa.int64(), 1
    for _ in range(depth):
        dtype, value = pa.struct([("f", dtype)]), {"f": value}
    return pa.array([value], dtype)


@pytest.fixture(scope="session")
def hostile():
    """Values no unmodified edge stores, for the tests that show the edge refusing and the hub quarantining
    them: a string array holding invalid UTF-8 (pyarrow builds it without checking), and deep structs."""
    invalid_utf8 = pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(b"\0\0\0\0\2\0\0\0"),
                                                          pa.py_buffer(b"\xff\xfe")])
    return SimpleNamespace(invalid_utf8=invalid_utf8, deep_struct=_deep_struct)


LEAKED_TOKEN = "hbo_" + "LeakMe" * 7
"""A token-shaped secret that the damaged requests below quote; no server log may ever contain it."""

DAMAGED_REQUESTS = (
    # a space before the colon: a bit-flipping link does this to the Authorization line
    f"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization : Bearer {LEAKED_TOKEN}\r\n\r\n".encode(),
    # a control byte inside the token
    f"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {LEAKED_TOKEN[:9]}\x01{LEAKED_TOKEN[9:]}\r\n\r\n"
    .encode(),
    # the same header twice, once damaged
    f"GET /healthz HTTP/1.1\r\nHost: x\r\nCookie: harbour_session={LEAKED_TOKEN}\r\nX\x7fY: 1\r\n\r\n".encode(),
)


@pytest.fixture(scope="session")
def damaged_requests():
    """Send each damaged request ``times`` times to 127.0.0.1:``port`` on a raw socket (no HTTP client would
    send them); returns the status lines the server answered."""
    import socket

    def send(port: int, times: int = 1) -> list[str]:
        answers = []
        for _ in range(times):
            for request in DAMAGED_REQUESTS:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
                    connection.sendall(request)
                    answers.append(connection.recv(200).split(b"\r\n", 1)[0].decode("latin-1"))
        return answers

    return SimpleNamespace(send=send, token=LEAKED_TOKEN)


@pytest.fixture(scope="session")
def postgres_server():
    """One throwaway PostgreSQL 15 cluster for the whole session (scenarios/services.py), started the first
    time a test asks for it; fsync on, as a real ledger has it. A server that cannot start fails the test
    with the reason and the server's log: the cluster tests never skip for want of PostgreSQL."""
    from scenarios.services import PostgresServer

    with PostgresServer() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server, request):
    """A fresh, empty database of ``postgres_server`` for this test, as a ``postgresql://`` URL; dropped after."""
    stem = re.sub(r"[^a-z0-9_]+", "_", request.node.name.lower())[:48].strip("_")
    name = f"t{next(_DATABASE_NUMBERS)}_{stem}"
    url = postgres_server.create_database(name)
    yield url
    postgres_server.drop_database(name)


_DATABASE_NUMBERS = itertools.count(1)
"""Makes each test's database name unique within the session (a test's name alone may repeat)."""


@pytest.fixture
def balancer():
    """Start HAProxy in front of some ``host:port`` backends: ``balancer(["127.0.0.1:8001", ...])`` gives a
    started ``scenarios.services.Balancer`` (``.url``, ``.backend_stats()``); each is stopped after the test."""
    from scenarios.services import Balancer

    started: list[Balancer] = []

    def start(backends):
        started.append(Balancer(backends).start())
        return started[-1]

    yield start
    for each in started:
        each.stop()


SLOW_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 200 + b"\r\n\r\n"
"""The head a slow client sends one byte at a time: longer than the patience of any server deadline tested."""


@pytest.fixture(scope="session")
def slow_clients():
    """``slow_clients.attack(port, probe, sockets=300, seconds=25)``: open ``sockets`` connections to 127.0.0.1:
    ``port`` that each send one byte of a request head a second (a slowloris), and call ``probe()`` (a healthy
    client's requests, blocking) over and over meanwhile. Returns when every slow connection was closed by the
    server or ``seconds`` passed: ``closed_after`` (seconds from opening to the server's close, per socket; None
    if still open), ``answers`` (what each got before the close) and ``probe_seconds`` (each probe's duration)."""
    import asyncio
    import time

    async def one(port: int, give_up: float) -> tuple[float | None, bytes]:
        opened = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answer = b""
        try:
            for byte in SLOW_HEAD:
                writer.write(bytes([byte]))
                try:
                    answer += await asyncio.wait_for(reader.read(4096), 1.0)
                except TimeoutError:
                    if time.monotonic() > give_up:
                        return None, answer
                    continue
                except ConnectionError:
                    return time.monotonic() - opened, answer
                while chunk := await reader.read(4096):  # the server answered: read to its close
                    answer += chunk
                return time.monotonic() - opened, answer
            return None, answer
        finally:
            writer.close()

    async def run(port: int, probe, sockets: int, seconds: float):
        give_up = time.monotonic() + seconds
        slow = [asyncio.create_task(one(port, give_up)) for _ in range(sockets)]
        probe_seconds: list[float] = []
        while not all(task.done() for task in slow) and time.monotonic() < give_up + 2:
            started = time.monotonic()
            await asyncio.to_thread(probe)
            probe_seconds.append(time.monotonic() - started)
            await asyncio.sleep(0.2)
        results = await asyncio.gather(*slow)
        return SimpleNamespace(closed_after=[r[0] for r in results], answers=[r[1] for r in results],
                               probe_seconds=probe_seconds)

    def attack(port: int, probe, sockets: int = 300, seconds: float = 25.0) -> SimpleNamespace:
        return asyncio.run(run(port, probe, sockets, seconds))

    return SimpleNamespace(attack=attack)


@pytest.fixture
def powercut(tmp_path):
    """The power-cut filesystem (``scenarios.powercut``) mounted at ``powercut.path``: put a data directory
    under it, SIGKILL its process, ``powercut.cut(prefix, seed, pids)``, restart. Skips, saying why, only where
    FUSE cannot work at all (no /dev/fuse, no fuse3 package)."""
    from scenarios.powercut import PowerCutMount, unavailable

    reason = unavailable()
    if reason:
        pytest.skip(f"the power-loss harness needs FUSE: {reason}")
    with PowerCutMount(tmp_path / "powercut") as mount:
        yield mount
