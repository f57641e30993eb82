"""The downlink through a real ``harbour edge run`` process and a real (tiny) hub over TCP: a dataset arrives
byte-identical, a reader looping during a switch never sees a mix, a SIGKILL mid-download resumes without
starting over, and managed settings apply unless pinned on board (issue 17).

The hub here is the test's own (``conftest.DownlinkHub``, the wire of ``sync_protocol.downlink``), so the
edge's side is tested whatever the state of the hub's; the whole fleet with ``harbour hub`` is in
tests/scenarios."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
import urllib.request

import pyarrow.ipc as pa_ipc
import pytest

from sync_protocol.downlink import ManagedSettings

pytestmark = pytest.mark.integration


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def status(edge) -> dict:
    with urllib.request.urlopen(edge.url + "/v1/status", timeout=10) as answer:
        return json.loads(answer.read())


def held_version(edge, name: str = "offers") -> int | None:
    with urllib.request.urlopen(edge.url + "/v1/datasets", timeout=10) as answer:
        listing = json.loads(answer.read())["datasets"]
    return next((d["version"] for d in listing if d["name"] == name), None)


def read_dataset(edge, name: str = "offers") -> tuple[int, bytes]:
    with urllib.request.urlopen(edge.url + f"/v1/datasets/{name}", timeout=30) as answer:
        return int(answer.headers["Harbour-Dataset-Version"]), answer.read()


def fetching(edge) -> dict:
    downloads = status(edge).get("sync", {}).get("downloads", [])
    return next((d for d in downloads if d["name"] == "offers"), {})


def start(start_edge, data_dir, hub, *extra):
    return start_edge(data_dir, "--hub", hub.url, "--token", hub.token, "--report-interval", "0.2s", *extra)


def test_a_dataset_arrives_byte_identical_and_readers_never_see_a_mix(tmp_path, start_edge, downlink_hub,
                                                                      dataset_bytes):
    v1 = dataset_bytes(1, 20_000)
    downlink_hub.publish("offers", v1)
    edge = start(start_edge, tmp_path / "edge", downlink_hub)
    wait_for(lambda: held_version(edge) == 1, 60, "version 1 on board")
    assert read_dataset(edge) == (1, v1)
    wait_for(lambda: (downlink_hub.reported() or {}).get("datasets") == {"offers": 1}, 30, "the report of v1")

    mixes, seen = [], []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            version, body = read_dataset(edge)
            table = pa_ipc.open_stream(io.BytesIO(body)).read_all()
            versions = set(table.column("version").to_pylist())
            seen.append(version)
            if versions != {version} or table.num_rows != 20_000 * version:
                mixes.append((version, versions, table.num_rows))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        v2 = dataset_bytes(2, 40_000)
        downlink_hub.bytes_per_second = 4_000_000
        downlink_hub.publish("offers", v2)
        wait_for(lambda: held_version(edge) == 2, 60, "version 2 on board")
        wait_for(lambda: seen.count(2) >= 3, 30, "the reader to see version 2")
    finally:
        stop.set()
        thread.join(30)
    assert not mixes and 1 in seen and seen.index(2) > 0
    assert seen[seen.index(2):] == [2] * len(seen[seen.index(2):])  # never back to the old version
    assert read_dataset(edge) == (2, v2)


@pytest.mark.guarantee("G3")
def test_sigkill_mid_download_resumes_without_starting_over(tmp_path, start_edge, downlink_hub, dataset_bytes):
    data = dataset_bytes(1, 120_000)
    downlink_hub.publish("offers", data)
    downlink_hub.bytes_per_second = 1_500_000
    edge = start(start_edge, tmp_path / "edge", downlink_hub)
    wait_for(lambda: (fetching(edge).get("offset") or 0) >= 1_000_000, 60, "a megabyte on board")
    edge.kill()  # SIGKILL, mid-download
    before = downlink_hub.served_bytes
    assert before < len(data)
    downlink_hub.bytes_per_second = None
    edge = start(start_edge, tmp_path / "edge", downlink_hub)
    wait_for(lambda: held_version(edge) == 1, 60, "the dataset after the restart")
    after = downlink_hub.served_bytes - before
    assert after < len(data) - 900_000  # resumed near where the durable bytes ended, not from byte 0
    assert downlink_hub.requests[-1][2] >= 1_000_000 - 256 * 1024
    assert read_dataset(edge) == (1, data)


def test_managed_settings_apply_unless_pinned_and_survive_a_restart_offline(tmp_path, start_edge, downlink_hub):
    downlink_hub.settings = ManagedSettings(3, {"priority": "offers=1", "seal-age": "30s", "metered": "true"})
    edge = start(start_edge, tmp_path / "edge", downlink_hub, "--priority", "telemetry=0")
    managed = wait_for(lambda: status(edge).get("managed_settings", {}).get("revision") == 3
                       and status(edge)["managed_settings"], 30, "the managed settings")
    assert managed["pinned"] == {"priority": "telemetry=0"}
    assert managed["applied"] == {"seal-age": "30s", "metered": "true"}
    reported = wait_for(lambda: (downlink_hub.reported() or {}).get("settings", {}).get("revision") == 3
                        and downlink_hub.reported()["settings"], 30, "the report of the settings")
    assert reported["pinned"] == {"priority": "telemetry=0"} and reported["applied"]["metered"] == "true"
    text = subprocess.run([sys.executable, "-m", "harbour_cli", "edge", "status", "--data", str(tmp_path / "edge")],
                          capture_output=True, text=True, timeout=60, check=True).stdout
    assert "managed settings (revision 3)" in text and "priority=telemetry=0 (pinned locally)" in text
    assert "metered=true (from the hub)" in text
    edge.stop()
    downlink_hub.stop()  # the ship restarts at sea, with no link
    edge = start_edge(tmp_path / "edge", "--hub", downlink_hub.url, "--token", downlink_hub.token)
    managed = status(edge)["managed_settings"]  # from DATA: the hub cannot be asked
    assert managed["revision"] == 3 and managed["pinned"] == {}  # --priority not given this time...
    assert managed["applied"] == {"priority": "offers=1", "seal-age": "30s", "metered": "true"}  # ...the hub's
