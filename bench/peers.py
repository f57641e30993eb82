"""The peers a user would pick instead of Harbour, driven for real on loopback:

* ``RsyncDaemon`` -- ``rsync --daemon`` (the Debian package) with a generated config in a temp dir; the
  client runs as ``rsync -a --partial ... rsync://127.0.0.1:PORT/harbour/...`` through the link proxy;
* ``ServerProcess`` -- ``peer_servers.py json|flight`` in its own process;
* ``post_files`` -- the JSON/HTTP client: gzip JSON-lines files POSTed one at a time on one keep-alive
  connection, each waiting for its answer (the pipeline a team writes in a day);
* ``BenchProxy`` -- the scenario link proxy plus ``go_silent()``: the connections open at that moment
  stop forwarding without a FIN or RST (a half-open satellite link), while new connections work.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from common import REPO

from scenarios.link_proxy import LinkProxy

RSYNC_TIMEOUT_SECONDS = 15
"""rsync's --timeout for every run: without one a silent link hangs the client for good (measured in
research/rsync-http-baselines.md); 15 s is what that note used."""

START_TIMEOUT_SECONDS = 30.0


class _SilenceableWriter:
    """Wraps one direction's writer: once its connection is silenced, bytes are swallowed and never
    acknowledged (``drain`` waits forever), as on a link whose packets stopped arriving."""

    def __init__(self, writer: asyncio.StreamWriter, silenced: set, connection_key: object) -> None:
        self._writer, self._silenced, self._key = writer, silenced, connection_key
        self.transport = writer.transport

    def write(self, data: bytes) -> None:
        if self._key not in self._silenced:
            self._writer.write(data)

    async def drain(self) -> None:
        while self._key in self._silenced:
            await asyncio.sleep(3600)
        await self._writer.drain()

    def write_eof(self) -> None:
        if self._key not in self._silenced:
            self._writer.write_eof()


class BenchProxy(LinkProxy):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._silenced: set = set()

    def go_silent(self) -> int:
        """Silence every open connection (half-open: no FIN, no RST); returns how many."""
        self._silenced |= {id(c) for c in self._connections}
        return len(self._connections)

    async def _pump(self, reader, writer, direction, connection) -> None:
        wrapped = _SilenceableWriter(writer, self._silenced, id(connection))
        await super()._pump(reader, wrapped, direction, connection)

    @property
    def wire_bytes(self) -> int:
        return self.stats.bytes_up + self.stats.bytes_down


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited during start-up with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {START_TIMEOUT_SECONDS:.0f} s")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the process group we started, SIGKILL if it lingers."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


class RsyncDaemon:
    """``with RsyncDaemon(tmp) as daemon:`` -- module ``harbour`` writes into ``daemon.root``."""

    def __init__(self, workdir: Path) -> None:
        if shutil.which("rsync") is None:
            raise RuntimeError("rsync is not installed: apt-get install -y rsync")
        self.workdir = workdir
        self.root = workdir / "received"
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> RsyncDaemon:
        self.root.mkdir(parents=True, exist_ok=True)
        identity = "uid = root\ngid = root\n" if os.geteuid() == 0 else ""
        config = self.workdir / "rsyncd.conf"
        config.write_text(
            f"port = {self.port}\naddress = 127.0.0.1\nuse chroot = no\nmax connections = 8\n"
            f"pid file = {self.workdir / 'rsyncd.pid'}\nlog file = {self.workdir / 'rsyncd.log'}\n"
            f"[harbour]\npath = {self.root}\nread only = no\n{identity}")
        self.process = subprocess.Popen(["rsync", "--daemon", "--no-detach", f"--config={config}"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        _wait_for_port(self.port, self.process, "rsync --daemon")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            _stop(self.process)

    @staticmethod
    def version() -> str:
        return subprocess.run(["rsync", "--version"], capture_output=True, text=True).stdout.splitlines()[0]


KILLED = -9


async def rsync(source: Path, proxy_port: int, dest: str, *extra: str, timeout: float = 600.0) -> int:
    """``rsync -a --partial`` of ``source/`` to module path ``dest`` through the proxy; the exit code, or
    ``KILLED`` if it was still running after ``timeout`` seconds (a watchdog's kill)."""
    command = ["rsync", "-a", "--partial", f"--timeout={RSYNC_TIMEOUT_SECONDS}", *extra, f"{source}/",
               f"rsync://127.0.0.1:{proxy_port}/harbour/{dest}/"]
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.DEVNULL)
    try:
        return await asyncio.wait_for(process.wait(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        return KILLED


class ServerProcess:
    """``with ServerProcess("json"|"flight", dir) as server:`` -- ``server.port``, ``server.pid``."""

    def __init__(self, kind: str, directory: Path) -> None:
        self.kind, self.directory = kind, directory
        self.process: subprocess.Popen | None = None
        self.port = 0

    def __enter__(self) -> ServerProcess:
        command = [sys.executable, str(REPO / "bench" / "peer_servers.py"), self.kind, str(self.directory)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        start_new_session=True, cwd=REPO)
        line = self.process.stdout.readline().decode().strip()  # type: ignore[union-attr]
        if not line.startswith("listening "):
            _stop(self.process)
            raise RuntimeError(f"{self.kind} peer server did not start: {line!r}")
        self.port = int(line.split()[1])
        _wait_for_port(self.port, self.process, f"{self.kind} peer server")
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            _stop(self.process)
            if self.process.stdout:
                self.process.stdout.close()


async def post_files(base_url: str, bodies: list[tuple[str, bytes]], timeout: float = 600.0) -> None:
    """POST each (name, gzip JSON lines) in turn on one keep-alive connection, each waiting for its 201."""
    headers = {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        for name, body in bodies:
            async with session.post(f"{base_url}/files/{name}", data=body, headers=headers) as response:
                if response.status != 201:
                    raise RuntimeError(f"JSON/HTTP peer refused {name}: {response.status} {await response.text()}")
                await response.read()
