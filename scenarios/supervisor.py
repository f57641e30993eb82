"""Start, kill and restart the real ``harbour`` processes, and never leave one behind.

Scenarios, benchmarks and end-to-end tests all need a hub and some edge nodes as real processes,
driven only through their public interfaces (CLI, HTTP). ``Supervisor`` starts them, each in its own
process group, records their output to log files, and kills every one it started when the block ends
-- normally, on an exception, or on Ctrl-C -- so a failed run never leaves a hub holding a port.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from hub.faults import CRASH_ENV

HARBOUR = [sys.executable, "-m", "harbour_cli"]
T = TypeVar("T")
START_TIMEOUT_SECONDS = 60.0
"""A hub or edge starts in well under a second; on a loaded 2-core CI machine, imports alone can take 5 s."""

EDGE_LISTENING_PREFIX = "harbour edge listening on "


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def harbour(*args: str, timeout: float = 120.0, env: dict[str, str] | None = None) -> str:
    """Run a one-shot ``harbour`` command; its stdout, or an error that carries its stderr."""
    result = subprocess.run([*HARBOUR, *args], capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})})
    if result.returncode != 0:
        raise RuntimeError(f"harbour {' '.join(args)} exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    return result.stdout


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.3) -> T:
    """``condition()`` once it is truthy, polled every ``interval`` s; AssertionError naming ``what`` (and the last
    value seen) after ``timeout`` s. For tests and scenarios that wait on real processes."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def http_json(url: str, *, token: str | None = None, timeout: float = 10.0) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        body = error.read()
        with contextlib.suppress(ValueError):
            return error.code, json.loads(body)
        return error.code, body.decode(errors="replace")


@dataclass
class ManagedProcess:
    name: str
    command: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    starts: int = 0

    def spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n--- start #{self.starts + 1}: {' '.join(self.command)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command, stdout=subprocess.PIPE, stderr=log, env={**os.environ, **self.env},
                start_new_session=True,  # its own process group: a kill reaches everything it started
            )
        self.starts += 1

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        """None while running (or never started); -9 after a SIGKILL."""
        return None if self.process is None else self.process.poll()

    def kill(self) -> None:
        """SIGKILL: a power cut, as far as the process can tell."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        if self.process.stdout:
            self.process.stdout.close()

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not stop in time."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.process.stdout:
            self.process.stdout.close()
        return self.process.returncode

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


@dataclass(frozen=True)
class HubPlaces:
    """The three places the processes of a hub cluster share (``--ledger``, ``--staging``, ``--warehouse``)."""

    ledger: str  # postgresql://...
    staging: Path
    warehouse: Path

    @property
    def options(self) -> tuple[str, ...]:
        return ("--ledger", self.ledger, "--staging", str(self.staging), "--warehouse", str(self.warehouse))


class HubCommands:
    """The one-shot ``harbour hub`` commands, run with ``options`` (a hub's ``--data``, and a cluster's places)."""

    options: tuple[str, ...]

    def add_site(self, site: str) -> str:
        return harbour("hub", "add-site", site, *self.options).strip()

    def add_operator(self, name: str = "operator") -> str:
        return harbour("hub", "add-operator", name, *self.options).strip()

    def query(self, sql: str) -> list[dict[str, Any]]:
        return json.loads(harbour("hub", "query", *self.options, "--format", "json", sql))


class HubProcess(HubCommands, ManagedProcess):
    def __init__(self, data: Path, log_path: Path, port: int | None = None, extra: tuple[str, ...] = (), *,
                 places: HubPlaces | None = None, name: str = "hub") -> None:
        self.data = data
        self.places = places
        self.port = port or free_port()
        command = [*HARBOUR, "hub", "run", *self.options, "--listen", f"127.0.0.1:{self.port}", *extra]
        super().__init__(name, command, log_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def options(self) -> tuple[str, ...]:
        return ("--data", str(self.data), *(self.places.options if self.places else ()))

    @property
    def tables(self) -> Path:
        """Where its merged Delta tables are (``HubLayout.tables``)."""
        return self.places.warehouse if self.places else self.data / "tables"

    @property
    def processes(self) -> tuple[HubProcess, ...]:
        """A lone hub is a cluster of one (``HubCluster.processes``)."""
        return (self,)

    def start(self, crash_at: str | None = None) -> HubProcess:
        """Start and wait until healthy. ``crash_at``: one of ``hub.faults.CRASH_POINTS``, where the process
        SIGKILLs itself (it must then be started again; without a crash point unless asked)."""
        self.env = {CRASH_ENV: crash_at} if crash_at else {}
        self.spawn()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"{self.name} exited during start-up: {self.log_tail()}")
            with contextlib.suppress(OSError):
                if http_json(self.url + "/healthz", timeout=2)[0] == 200:
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not healthy after {START_TIMEOUT_SECONDS:.0f} s: {self.log_tail()}")


class EdgeProcess(ManagedProcess):
    def __init__(self, site: str, data: Path, log_path: Path, *, hub_url: str | None = None,
                 token: str | None = None, extra: tuple[str, ...] = ()) -> None:
        self.site = site
        self.data = data
        self.url = ""
        command = [*HARBOUR, "edge", "run", "--site", site, "--data", str(data), "--listen", "127.0.0.1:0"]
        if hub_url:
            command += ["--hub", hub_url]
        env = {"HARBOUR_EDGE_TOKEN": token} if token else {}  # not on the command line: ps shows it
        super().__init__(f"edge {site}", command + list(extra), log_path, env)

    def start(self) -> EdgeProcess:
        self.spawn()
        assert self.process is not None and self.process.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        os.set_blocking(self.process.stdout.fileno(), False)
        buffered = b""
        while time.monotonic() < deadline:
            chunk = self.process.stdout.read() or b""
            buffered += chunk
            for line in buffered.decode(errors="replace").splitlines():
                if line.startswith(EDGE_LISTENING_PREFIX):
                    self.url = line[len(EDGE_LISTENING_PREFIX):].strip()
                    return self
            if not self.running:
                raise RuntimeError(f"{self.name} exited during start-up: {self.log_tail()}")
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start in {START_TIMEOUT_SECONDS:.0f} s: {self.log_tail()}")

    def status(self) -> dict[str, Any]:
        return http_json(self.url + "/v1/status")[1]


class Service(Protocol):
    def stop(self) -> None: ...


S = TypeVar("S", bound=Service)


class Supervisor:
    """``with Supervisor(workdir) as fleet:`` -- every process started through it dies with the block."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.processes: list[ManagedProcess] = []
        self.services: list[Service] = []

    def hub(self, name: str = "hub", extra: tuple[str, ...] = (), places: HubPlaces | None = None) -> HubProcess:
        hub = HubProcess(self.workdir / name, self.workdir / "logs" / f"{name}.log", extra=extra, places=places,
                         name=name)
        self.processes.append(hub)
        return hub

    def edge(self, site: str, *, hub_url: str | None = None, token: str | None = None,
             extra: tuple[str, ...] = ()) -> EdgeProcess:
        edge = EdgeProcess(site, self.workdir / f"edge-{site}", self.workdir / "logs" / f"edge-{site}.log",
                           hub_url=hub_url, token=token, extra=extra)
        self.processes.append(edge)
        return edge

    def service(self, service: S) -> S:
        """A server that is not one of our processes (``HubCluster``: PostgreSQL, HAProxy): its ``stop()`` is
        called at the end of the block, after every process was killed."""
        self.services.append(service)
        return service

    def __enter__(self) -> Supervisor:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._previous_sigterm = signal.getsignal(signal.SIGTERM)
        if self._previous_sigterm in (signal.SIG_DFL, None):
            with contextlib.suppress(ValueError):  # only the main thread may set handlers
                signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run __exit__ on SIGTERM too
        return self

    def __exit__(self, *exc: object) -> None:
        for process in reversed(self.processes):
            with contextlib.suppress(Exception):
                process.kill()
        for service in reversed(self.services):
            with contextlib.suppress(Exception):
                service.stop()
        with contextlib.suppress(Exception):
            signal.signal(signal.SIGTERM, self._previous_sigterm or signal.SIG_DFL)
