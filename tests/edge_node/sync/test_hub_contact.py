"""A wrong token or hub address is not silent: a real edge says so once in its log and in its status, the
hub's fleet view says "token refused" instead of "silent", and a corrected token file is used without a
restart (issue: a new operator's first hour)."""

from __future__ import annotations

import subprocess
import sys
import time

import pyarrow as pa
import pytest

from edge_node.client import EdgeClient
from scenarios.supervisor import Supervisor, http_json, wait_until

pytestmark = pytest.mark.integration


def harbour(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harbour_cli", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.guarantee("G5")
def test_a_refused_token_is_said_once_shown_everywhere_and_a_fixed_token_file_needs_no_restart(tmp_path):
    with Supervisor(tmp_path / "run") as supervisor:
        hub = supervisor.hub().start()
        good = hub.add_site("ship-1")
        operator = hub.add_operator()
        token_file = tmp_path / "ship-1.token"
        token_file.write_text("hbs_" + "wrong" * 9 + "\n")
        edge = supervisor.edge("ship-1", hub_url=hub.url, extra=(
            "--token-file", str(token_file), "--seal-age", "1s", "--log-level", "INFO")).start()
        EdgeClient(edge.url).write("telemetry", pa.table({"row_id": pa.array([1, 2, 3], pa.int64())}))

        problem = wait_until(lambda: edge.status().get("sync", {}).get("hub_problem"), 30, "the edge to see the 401")
        assert "refused this site's token (401)" in problem and "--token-file" in problem
        text = harbour("edge", "status", "--data", str(edge.data)).stdout
        assert "problem: the hub at" in text and "refused this site's token" in text
        assert wait_until(lambda: fleet_says_refused(hub, operator), 30, "the hub to note the refused token")
        time.sleep(3)  # many more refused requests: still one warning
        warnings = [line for line in edge.log_tail(200_000).splitlines() if "WARNING" in line and "refused" in line]
        assert len(warnings) == 1, warnings

        token_file.write_text(good + "\n")  # rotated on board; no restart
        released = harbour("edge", "release", "--all", "--data", str(edge.data))
        assert released.returncode == 0 or "no parked" in released.stderr.lower(), released.stderr
        wait_until(lambda: hub_rows(hub) == 3, 60, "the rows at the hub with the new token")
        assert edge.status()["sync"]["hub_problem"] is None
        assert "read a new token from" in edge.log_tail(200_000)


def fleet_says_refused(hub, operator: str) -> bool:
    _, fleet = http_json(hub.url + "/v1/fleet", token=operator)
    site = next((s for s in fleet.get("sites", []) if s["site"] == "ship-1"), None)
    return bool(site and site.get("seconds_since_token_refused") is not None)


def hub_rows(hub) -> int:
    try:
        return hub.query("SELECT count(*) AS n FROM telemetry")[0]["n"]
    except RuntimeError:
        return 0
