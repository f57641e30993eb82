"""A hub cluster for a scenario run: PostgreSQL, N ``harbour hub run`` and HAProxy in front of them.

    ships' link proxies ─▶ Balancer (HAProxy, round robin, no affinity) ─▶ hub1 … hubN
                                                                            │ --ledger postgresql://…
                                                                            │ --staging  WORKDIR/hub-staging
                                                                            │ --warehouse WORKDIR/hub-warehouse

To the runner it looks like one hub (``HubProcess``'s ``url``, ``port``, ``options``, ``tables``, ``add_site``,
``add_operator``), so every ``harbour hub`` command and every request of the run goes to the cluster: the
commands with the shared places and a ``--data`` of their own (an operator's machine), the requests to the
balancer. ``processes`` are the hubs a ``hub-kill`` chooses from. Each process and both servers end with the
``Supervisor``'s block, also on a failure or Ctrl-C; the servers' logs are copied into ``WORKDIR/logs`` first.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .services import Balancer, PostgresServer
from .supervisor import HubCommands, HubPlaces, HubProcess, Supervisor

LEDGER_DATABASE = "harbour"

T = TypeVar("T")


class HubCluster(HubCommands):
    def __init__(self, supervisor: Supervisor, processes: int) -> None:
        if processes < 2:
            raise ValueError(f"a hub cluster has at least 2 processes, not {processes}: use Supervisor.hub()")
        self.supervisor = supervisor
        self.workdir = supervisor.workdir
        self.count = processes
        self.postgres = PostgresServer()
        self.balancer: Balancer | None = None
        self.places: HubPlaces | None = None
        self.processes: tuple[HubProcess, ...] = ()
        self._step_lock = threading.Lock()
        self._stopping = False

    def start(self) -> HubCluster:
        """PostgreSQL, then the hubs one after the other (the first sets the ledger up), then the balancer.
        The runner starts it in a thread; each step is one ``_step``, so that a run ended meanwhile (Ctrl-C)
        waits for the step in progress and then stops everything, and no later step starts anything."""
        self.supervisor.service(self)
        self._step(self.postgres.start)
        self.places = HubPlaces(self._step(lambda: self.postgres.create_database(LEDGER_DATABASE)),
                                self.workdir / "hub-staging", self.workdir / "hub-warehouse")
        self.processes = tuple(self.supervisor.hub(f"hub{number}", places=self.places)
                               for number in range(1, self.count + 1))
        for process in self.processes:
            self._step(process.start)
        self.balancer = Balancer([f"127.0.0.1:{process.port}" for process in self.processes])
        self._step(self.balancer.start)
        return self

    def _step(self, action: Callable[[], T]) -> T:
        with self._step_lock:
            if self._stopping:
                raise RuntimeError("the run ended while its hub cluster was starting")
            return action()

    def stop(self) -> None:
        """Kill the hubs (the ``Supervisor`` has, unless one was being started), copy the servers' logs to
        WORKDIR/logs (their own dirs go with them), stop the balancer, then PostgreSQL."""
        self._stopping = True
        with self._step_lock:
            for process in self.processes:
                with contextlib.suppress(Exception):
                    process.kill()
            logs = self.workdir / "logs"
            for server, name in ((self.balancer, "balancer.log"), (self.postgres, "postgres.log")):
                if server is not None and server.dir is not None:
                    with contextlib.suppress(OSError):
                        logs.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(server.log_path, logs / name)
            try:
                if self.balancer is not None:
                    self.balancer.stop()
            finally:
                self.postgres.stop()

    def _front(self) -> Balancer:
        if self.balancer is None:
            raise RuntimeError("the hub cluster is not started: call start() first")
        return self.balancer

    @property
    def url(self) -> str:
        return self._front().url

    @property
    def port(self) -> int:
        return self._front().port

    @property
    def options(self) -> tuple[str, ...]:
        """Every ``harbour hub`` command of the run: a ``--data`` no process runs in, and the shared places."""
        if self.places is None:
            raise RuntimeError("the hub cluster is not started: call start() first")
        return ("--data", str(self.workdir / "hub-commands"), *self.places.options)

    @property
    def tables(self) -> Path:
        return self.workdir / "hub-warehouse"
