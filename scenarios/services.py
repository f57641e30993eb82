"""Throwaway PostgreSQL and HAProxy servers on loopback, for the hub cluster's tests and benchmarks (issue 14).

A hub cluster is several hub processes that share one PostgreSQL ledger and sit behind one HTTP load
balancer. Its tests and benchmarks run the real servers, not stand-ins: Debian's PostgreSQL 15 and Debian's
HAProxy, which ``tests/services_setup.sh`` (``make services``) installs. Each server here lives in a temp dir
of its own, listens on 127.0.0.1 only, on a free port, and is removed with that dir by ``stop()`` or at the
end of its ``with`` block.

- ``PostgresServer``: one throwaway cluster; ``create_database(name)`` gives a URL for psycopg.
- ``Balancer``: HAProxy in front of some ``host:port`` backends, round robin, no affinity, health checked.
- ``ObjectStore``: an S3-compatible server (moto's, from PyPI), for a warehouse at ``s3://``; it honours the
  conditional writes (``If-None-Match: *``) that delta-rs commits table versions with.
- ``haproxy_config(listen, backends)``: the configuration that the ``Balancer`` runs and that
  ``docs/examples/haproxy.cfg`` ships, one text for both (``python -m scenarios.services`` prints the example;
  a test checks the shipped file against it).
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from .supervisor import free_port

PG_BINDIR = Path("/usr/lib/postgresql/15/bin")
"""Debian's PostgreSQL 15 server binaries (package postgresql-15); ``pg_config --bindir`` is asked otherwise."""

PG_START_TIMEOUT_SECONDS = 30
"""initdb plus a start take about a second; a loaded 2-core CI machine with fsync on can take several."""

PG_MAX_CONNECTIONS = 300
"""A few hubs with a connection pool each, the merger's connections and the tests' own, with room to spare."""

PG_USER = "postgres"
"""The cluster's superuser, and the system user that runs it when we are root (PostgreSQL refuses root)."""

DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
"""Names that need no quoting anywhere (a URL, psql, a log line) and fit PostgreSQL's 63-byte limit."""

HAPROXY = Path("/usr/sbin/haproxy")
"""Debian's HAProxy (package haproxy)."""

BALANCER_START_TIMEOUT_SECONDS = 10.0
"""HAProxy listens within milliseconds; the margin is for a loaded machine."""

HEALTH_CHECK = "inter 500ms fall 2 rise 1"
"""A backend that stops answering ``GET /healthz`` is out after two failed checks (<= ~1 s), back after one
good one. Checks are cheap (a hub answers /healthz from memory), so twice a second per hub costs nothing."""

UPLOAD_TIMEOUT = "60s"
"""How long the balancer waits on a silent client or hub: a chunk over a slow satellite link is slow."""

LOG_TAIL_CHARS = 3000
"""How much of a server's log an error quotes."""


class ServiceError(RuntimeError):
    """A test server did not start or answer: what was attempted, and the tail of the server's log."""

    def __init__(self, op: str, log: Path | None = None, hint: str = "") -> None:
        tail = _tail(log) if log is not None else ""
        super().__init__(f"{op}{f' ({hint})' if hint else ''}" + (f"\n--- {log} (tail) ---\n{tail}" if tail else ""))


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    except OSError as error:
        return f"(unreadable: {error})"


class _Service:
    """A server in a temp dir of its own. ``start()`` makes the dir and launches the server in it, removing all
    again if that fails; ``stop()`` halts it and removes the dir; ``with Server(...) as server:`` does both."""

    NAME = "service"
    dir: Path | None = None
    port: int | None = None

    def start(self):
        if self.dir is not None:
            raise ServiceError(f"start {self.NAME}", hint=f"already running in {self.dir}")
        self.dir = Path(tempfile.mkdtemp(prefix=f"harbour-{self.NAME.lower()}-"))
        try:
            self._launch()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Halt the server and remove its dir; safe to call twice."""
        if self.dir is None:
            return
        try:
            self._halt()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = self.port = None

    def _started_dir(self) -> Path:
        if self.dir is None:
            raise ServiceError(f"use {self.NAME}", hint="it is not running: call start() first")
        return self.dir

    def _launch(self) -> None:
        raise NotImplementedError

    def _halt(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _ChildService(_Service):
    """A server run in the foreground as our child process, on a free port of 127.0.0.1."""

    process: subprocess.Popen | None = None

    def _spawn(self, argv: list[str], log_path: Path, timeout: float) -> None:
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise ServiceError(f"{self.NAME} exited {self.process.returncode} at start", log_path)
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise ServiceError(f"{self.NAME} did not listen on 127.0.0.1:{self.port} within {timeout} s",
                                       log_path) from None
                time.sleep(0.05)

    def _halt(self) -> None:
        """SIGTERM, then SIGKILL if it has not stopped within 10 s."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


def _pg_bindir() -> Path:
    if (PG_BINDIR / "postgres").exists():
        return PG_BINDIR
    try:
        return Path(subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
                    .stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        raise ServiceError(f"no PostgreSQL server binaries in {PG_BINDIR} nor from pg_config",
                           hint="run `make services` (tests/services_setup.sh)") from None


class PostgresServer(_Service):
    """A throwaway PostgreSQL cluster: its data dir and unix socket in one temp dir, TCP on 127.0.0.1 only.

    ``fsync`` is on by default, as a real ledger has it; unit tests that commit a lot may turn it off.
    """

    NAME = "PostgreSQL"

    def __init__(self, *, fsync: bool = True, max_connections: int = PG_MAX_CONNECTIONS) -> None:
        self.fsync = fsync
        self.max_connections = max_connections

    @property
    def data_dir(self) -> Path:
        return self._started_dir() / "data"

    @property
    def log_path(self) -> Path:
        return self._started_dir() / "server.log"

    def url(self, database: str = "postgres") -> str:
        self._started_dir()
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def _launch(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.dir, PG_USER, PG_USER)
        # trust: anyone on this machine may connect as any user, with no password. Fine for a throwaway
        # cluster that listens on loopback only and holds test data; never for a real ledger.
        self._run("initdb", "-D", str(self.data_dir), "-U", PG_USER, "--auth=trust", "--encoding=UTF8",
                  "--locale=C", "--no-instructions",
                  "--no-sync")  # the initial files: a crash of the machine here only loses a test cluster
        self.port = free_port()
        with (self.data_dir / "postgresql.conf").open("a") as conf:  # later lines win over initdb's
            conf.write(f"\n# harbour test cluster (scenarios/services.py)\nlisten_addresses = '127.0.0.1'\n"
                       f"port = {self.port}\nunix_socket_directories = '{self.dir}'\n"
                       f"max_connections = {self.max_connections}\nfsync = {'on' if self.fsync else 'off'}\n")
        self._run("pg_ctl", "start", "-D", str(self.data_dir), "-l", str(self.log_path), "-w",
                  "-t", str(PG_START_TIMEOUT_SECONDS), op="start PostgreSQL")
        self._wait_until_ready()

    def _halt(self) -> None:
        """pg_ctl stop -m fast: open transactions are rolled back, sessions closed; immediate if that fails."""
        if (self.data_dir / "postmaster.pid").exists():
            stop = ["pg_ctl", "stop", "-D", str(self.data_dir), "-w", "-t", str(PG_START_TIMEOUT_SECONDS)]
            if self._run(*stop, "-m", "fast", check=False).returncode != 0:
                self._run(*stop, "-m", "immediate", check=False)

    def create_database(self, name: str) -> str:
        """Create an empty database; its URL."""
        from psycopg import sql
        with self._admin() as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(_database_name(name))))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, closing whatever connections still use it."""
        from psycopg import sql
        with self._admin() as connection:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                               .format(sql.Identifier(_database_name(name))))

    def _admin(self):
        import psycopg
        return psycopg.connect(self.url(), autocommit=True, connect_timeout=10)

    def _run(self, tool: str, *args: str, op: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(_pg_bindir() / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", PG_USER, "--", *command]
        # cwd: the postgres user may not be allowed into ours (root's home)
        result = subprocess.run(command, cwd=self.dir, capture_output=True, text=True,
                                timeout=PG_START_TIMEOUT_SECONDS + 10)
        if check and result.returncode != 0:
            log = self.dir / "server.log" if self.dir else None
            raise ServiceError(f"{op or tool} exited {result.returncode}: {(result.stderr or result.stdout).strip()}",
                               log if log and log.exists() else None)
        return result

    def _wait_until_ready(self) -> None:
        """pg_ctl -w saw the server ready; this also checks the TCP listener that the URLs name."""
        deadline = time.monotonic() + PG_START_TIMEOUT_SECONDS
        while self._run("pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port), "-t", "1",
                        check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise ServiceError(f"PostgreSQL did not accept connections on 127.0.0.1:{self.port} within "
                                   f"{PG_START_TIMEOUT_SECONDS} s", self.log_path)
            time.sleep(0.1)


def _database_name(name: str) -> str:
    if not DATABASE_NAME.fullmatch(name):
        raise ValueError(f"database name {name!r}: use lower-case letters, digits and _, at most 63, "
                         "not starting with a digit")
    return name


HAPROXY_TEMPLATE = """\
# HAProxy in front of a Harbour hub cluster. Every hub can answer every request (the hubs share their ledger
# in PostgreSQL), so requests are spread round robin with no affinity: no cookie, no stickiness, and each
# request of a client's keep-alive connection is balanced anew.
# Rendered by haproxy_config() in scenarios/services.py; the cluster tests run the same text on loopback.
global
    log stdout format raw local0 info
{stats}
defaults
    mode http
    log global
    option httplog
    # Keep the client's connection, but open one connection to a hub per request and close it after the
    # answer: the next request may go to another hub.
    option http-server-close
    timeout connect 2s
    # Generous: an upload chunk over a slow link can take long to arrive, and a hub may fsync before it answers.
    timeout client {upload_timeout}
    timeout server {upload_timeout}
    # A request that could not reach a hub, or that a hub closed without a byte of answer (it crashed), is
    # sent again to another hub (redispatch on every retry). Safe for Harbour: a tus PATCH names its
    # Upload-Offset, so a replayed one is refused (409) rather than applied twice, and a replayed creation
    # POST at worst leaves an unused upload. Only a request that fits in one buffer (tune.bufsize, 16 KiB) is
    # replayed after being sent; a larger one fails back to the client (502), which resumes its upload.
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response

frontend harbour
    bind {listen}
    default_backend hubs

backend hubs
    balance roundrobin
    # A hub is taken out after two failed checks of GET /healthz (~1 s after it dies) and back after one.
    option httpchk GET /healthz
    http-check expect status 200
    default-server check {health_check}
{servers}"""

EXAMPLE_LISTEN = ":8700"
EXAMPLE_BACKENDS = ("127.0.0.1:8701", "127.0.0.1:8702", "127.0.0.1:8703")
EXAMPLE_STATS_SOCKET = "/run/haproxy/admin.sock"
"""The input that docs/examples/haproxy.cfg is rendered from: three hubs on one machine, Debian's socket path."""


def haproxy_config(listen: str, backends: Sequence[str], stats_socket: str | None = None) -> str:
    """HAProxy's configuration for ``backends`` (``host:port`` each) behind ``listen`` (``[host]:port``)."""
    if not backends:
        raise ValueError("a balancer needs at least one backend")
    stats = (f"    # show stat, show servers state: echo 'show stat' | socat stdio {stats_socket}\n"
             f"    stats socket {stats_socket} mode 600 level operator\n") if stats_socket else ""
    servers = "".join(f"    server hub{number} {address}\n" for number, address in enumerate(backends, 1))
    return HAPROXY_TEMPLATE.format(stats=stats, upload_timeout=UPLOAD_TIMEOUT, listen=listen,
                                   health_check=HEALTH_CHECK, servers=servers)


def example_haproxy_config() -> str:
    """docs/examples/haproxy.cfg, as it must read."""
    return haproxy_config(EXAMPLE_LISTEN, EXAMPLE_BACKENDS, EXAMPLE_STATS_SOCKET)


class Balancer(_ChildService):
    """HAProxy on a free port of 127.0.0.1 in front of ``backends``, run in the foreground as our child."""

    NAME = "HAProxy"

    def __init__(self, backends: Sequence[str]) -> None:
        self.backends = tuple(backends)

    @property
    def url(self) -> str:
        self._started_dir()
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self._started_dir() / "haproxy.log"

    def _launch(self) -> None:
        if not HAPROXY.exists():
            raise ServiceError(f"no {HAPROXY}", hint="run `make services` (tests/services_setup.sh)")
        self.port = free_port()
        config = self.dir / "haproxy.cfg"
        config.write_text(haproxy_config(f"127.0.0.1:{self.port}", self.backends, str(self.dir / "admin.sock")))
        # -db: stay in the foreground (HAProxy stops at once on SIGTERM, closing its connections)
        self._spawn([str(HAPROXY), "-db", "-f", str(config)], self.log_path, BALANCER_START_TIMEOUT_SECONDS)

    def backend_stats(self) -> dict[str, dict[str, str]]:
        """HAProxy's ``show stat`` row of each backend, by its ``host:port``: ``status`` (UP, DOWN, ...),
        ``stot`` and ``connect`` (requests sent its way, counting those it refused), ``wredis`` (of those,
        sent on to another backend), ``hrsp_2xx`` (answered)..."""
        with socket.socket(socket.AF_UNIX) as stats:
            stats.settimeout(5)
            stats.connect(str(self._started_dir() / "admin.sock"))
            stats.sendall(b"show stat\n")
            answer = b"".join(iter(lambda: stats.recv(65536), b"")).decode()
        rows = csv.DictReader(answer.removeprefix("# ").splitlines())
        names = {f"hub{number}": address for number, address in enumerate(self.backends, 1)}
        return {names[row["svname"]]: row for row in rows if row["pxname"] == "hubs" and row["svname"] in names}

    def wait_for_status(self, backend: str, status: str, timeout: float = 10.0) -> float:
        """Wait until HAProxy's health checks give ``backend`` this ``status`` (UP or DOWN); the seconds it took."""
        began = time.monotonic()
        while (seen := self.backend_stats()[backend]["status"]) != status:
            if time.monotonic() - began > timeout:
                raise ServiceError(f"backend {backend} is still {seen}, not {status}, after {timeout} s",
                                   self.log_path)
            time.sleep(0.05)
        return time.monotonic() - began


MOTO_SERVER = Path(sys.executable).with_name("moto_server")

OBJECT_STORE_START_TIMEOUT_SECONDS = 30.0
"""moto's server imports Flask and every AWS service model at start: a few seconds on a busy 2-core machine."""


class ObjectStore(_ChildService):
    """moto's S3 server on a free port of 127.0.0.1, as our child; ``environment()`` is what a hub needs."""

    NAME = "moto_server"

    @property
    def endpoint(self) -> str:
        self._started_dir()
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self._started_dir() / "s3.log"

    def environment(self) -> dict[str, str]:
        """The AWS_* variables a hub (delta-rs, pyarrow) reads: this endpoint, plain HTTP, throwaway keys."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": "harbour-test", "AWS_SECRET_ACCESS_KEY": "harbour-test-secret"}

    def create_bucket(self, name: str) -> str:
        """Make bucket ``name``; its ``s3://`` URL."""
        import boto3  # moto's dependency: present wherever moto_server is

        client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                              aws_access_key_id="harbour-test", aws_secret_access_key="harbour-test-secret")
        client.create_bucket(Bucket=name)
        return f"s3://{name}"

    def _launch(self) -> None:
        if not MOTO_SERVER.exists():
            raise ServiceError(f"no {MOTO_SERVER}", hint="pip install -e '.[dev]' (moto[server])")
        self.port = free_port()
        self._spawn([str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(self.port)], self.log_path,
                    OBJECT_STORE_START_TIMEOUT_SECONDS)


if __name__ == "__main__":
    sys.stdout.write(example_haproxy_config())
