"""A scenario's hub cluster: PostgreSQL, hub processes sharing ledger, staging and warehouse, HAProxy in front;
the runner reaches it like one hub, and nothing of it outlives the ``Supervisor``'s block."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from scenarios.hub_cluster import HubCluster
from scenarios.supervisor import Supervisor, harbour, http_json

pytestmark = pytest.mark.integration


def test_a_cluster_answers_as_one_hub_and_stops_with_the_supervisor(tmp_path):
    with Supervisor(tmp_path) as supervisor:
        cluster = HubCluster(supervisor, 2).start()
        cluster.add_site("aurora")
        operator = cluster.add_operator("scenario")
        for url in (cluster.url, *(process.url for process in cluster.processes)):
            status, fleet = http_json(url + "/v1/fleet", token=operator)  # the ledger is shared: all know both
            assert status == 200 and [site["site"] for site in fleet["sites"]] == ["aurora"], (url, fleet)
        report = json.loads(harbour("hub", "status", *cluster.options, "--format", "json"))
        assert [site["site"] for site in report["sites"]] == ["aurora"]
        assert cluster.tables == cluster.places.warehouse and cluster.port != cluster.processes[0].port
        servers = [cluster.postgres.dir, cluster.balancer.dir]
        pids = [cluster.balancer.process.pid, *(p.process.pid for p in cluster.processes)]
    assert not any(server.exists() for server in servers)  # PostgreSQL and HAProxy stopped, their dirs removed
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert {"balancer.log", "postgres.log", "hub1.log", "hub2.log"} <= {p.name for p in (tmp_path / "logs").iterdir()}


def test_a_cluster_has_at_least_two_processes(tmp_path):
    with Supervisor(tmp_path) as supervisor, pytest.raises(ValueError, match="at least 2"):
        HubCluster(supervisor, 1)


def test_a_run_ended_while_the_cluster_starts_leaves_nothing_running(tmp_path):
    """The runner starts the cluster in a thread: Ctrl-C meanwhile ends the Supervisor's block, whose ``stop()``
    waits for the step in progress, stops everything, and keeps the later steps from starting anything."""
    failed: list[Exception] = []

    def start() -> None:
        try:
            cluster.start()
        except RuntimeError as error:
            failed.append(error)

    with Supervisor(tmp_path) as supervisor:
        cluster = HubCluster(supervisor, 2)
        starter = threading.Thread(target=start)
        starter.start()
        deadline = time.monotonic() + 60
        while not (cluster.processes and cluster.processes[0].running) and time.monotonic() < deadline:
            time.sleep(0.01)
        cluster.stop()  # hub1 is starting, hub2 and the balancer are still to come
        starter.join(60)
    assert failed and "while its hub cluster was starting" in str(failed[0])
    assert [p.running for p in cluster.processes] == [False, False] and cluster.processes[1].starts <= 1
    assert cluster.postgres.dir is None and (cluster.balancer is None or cluster.balancer.dir is None)
