"""The hub tells every client how long it spent on a request itself (``Server-Timing: hub;dur=MS``), so
that an edge does not take the hub's fsync and commit for a thin link. For a PATCH, the time the body's
bytes spent travelling is not the hub's."""

from __future__ import annotations

import time

import pytest

from edge_node.sync.transport import server_timing_seconds

from .conftest import Hub, chain, free_port

pytestmark = pytest.mark.integration


def test_every_answer_says_how_long_the_hub_worked_on_it(tmp_path):
    hub = Hub(tmp_path / "data", free_port(), tmp_path / "hub.log")
    hub.start()
    try:
        token = hub.add_site("aurora")
        segment = chain("aurora", "telemetry", 1)[0]
        started = time.monotonic()
        created = hub.create(token, segment)
        elapsed = time.monotonic() - started
        assert created.status == 201
        spent = server_timing_seconds(created.headers["server-timing"])
        assert 0 < spent <= elapsed
        patched = hub.patch(token, segment.key, 0, segment.data)
        assert patched.status == 204
        assert 0 < server_timing_seconds(patched.headers["server-timing"]) < 30
        refused = hub.request("HEAD", "/v1/sync/uploads/aurora.telemetry.1")  # no token: still timed
        assert refused.status == 401 and "hub;dur=" in refused.headers["server-timing"]
    finally:
        hub.stop()


@pytest.mark.parametrize(("header", "seconds"), [
    ("hub;dur=12.5", 0.0125), ("cache;dur=3, hub;dur=40", 0.04), ("hub", 0.0), ("hub;dur=abc", 0.0),
    ("hub;dur=-5", 0.0), ("", 0.0), ("hub;dur=1e12", 0.0),
])
def test_server_timing_is_read_strictly(header, seconds):
    assert server_timing_seconds(header) == pytest.approx(seconds)
