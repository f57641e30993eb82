"""Two unmodified edges and a real hub (issue 12 items 2 and 5): what each ship's edge acknowledges merges
at the hub, although the ships spell a column differently in case (``Speed`` / ``speed``: one column,
the first spelling), send it as integers and as fractions (int64 widens to float64), and send the same
timestamp text as JSON Lines and as CSV (both UTC). Nothing is quarantined, and a table after them by
name keeps merging. (Before: Delta refused the case duplicate inside the write, the merger retried that
batch forever and every later table stopped for all sites.)"""

from __future__ import annotations

import json
import urllib.request

import pytest

from scenarios.supervisor import Supervisor, harbour

from .test_sync_end_to_end import FAST_SEALING, wait_until

pytestmark = pytest.mark.integration


def post(url: str, table: str, body: bytes, content_type: str) -> int:
    request = urllib.request.Request(f"{url}/v1/tables/{table}", data=body, method="POST",
                                     headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status


def count(hub, table: str) -> int:
    try:
        return hub.query(f"SELECT count(*) AS n FROM {table}")[0]["n"]
    except RuntimeError:  # not merged yet
        return 0


@pytest.fixture
def fleet(tmp_path):
    with Supervisor(tmp_path / "run") as supervisor:
        hub = supervisor.hub().start()
        edges = {}
        for site in ("ship-a", "ship-b"):
            edges[site] = supervisor.edge(site, hub_url=hub.url, token=hub.add_site(site), extra=FAST_SEALING)
            edges[site].start()
        yield hub, edges


@pytest.mark.guarantee("G2", "G6")
def test_two_ships_that_disagree_on_case_kind_and_format_merge_into_one_table(fleet):
    hub, edges = fleet
    a, b = edges["ship-a"].url, edges["ship-b"].url
    assert post(a, "telemetry", b"id,Speed,seen\n1,12,2026-12-01T10:00:00Z\n", "text/csv") == 200
    wait_until(lambda: count(hub, "telemetry") == 1, 60, "ship A's row at the hub")  # the table says Speed, int
    lines = (b'{"id": 2, "speed": 12.5, "seen": "2026-12-01T10:00:00Z"}\n'
             b'{"id": 3, "speed": 7, "seen": "2026-12-01T10:00:00.25Z"}\n')
    assert post(b, "telemetry", lines, "application/x-ndjson") == 200
    assert post(a, "zulu", b'{"id": 1}\n', "application/x-ndjson") == 200
    wait_until(lambda: count(hub, "telemetry") == 3 and count(hub, "zulu") == 1, 60, "every row at the hub")
    merged = hub.query("SELECT _site, id, Speed, epoch_us(seen) AS us FROM telemetry ORDER BY id")
    ten = 1_796_119_200_000_000  # 2026-12-01T10:00:00Z
    assert [(r["_site"], r["id"], r["Speed"], r["us"]) for r in merged] == [
        ("ship-a", 1, 12.0, ten), ("ship-b", 2, 12.5, ten), ("ship-b", 3, 7.0, ten + 250_000)]
    columns = {r["column_name"]: r["column_type"] for r in hub.query("SELECT * FROM (DESCRIBE telemetry)")}
    assert columns["Speed"] == "DOUBLE" and "speed" not in columns
    assert columns["seen"] == "TIMESTAMP WITH TIME ZONE"
    report = json.loads(harbour("hub", "status", "--data", str(hub.data), "--format", "json"))
    assert [q for site in report["sites"] for q in site["quarantined"]] == []
