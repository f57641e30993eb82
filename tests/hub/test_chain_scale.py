"""Chain status (G8) costs time in the number of gaps, never in the seq range: a hand-made tus upload of one
segment at seq 10^12 to a real `harbour hub run`, then `/v1/fleet` and `harbour hub status` answer at once
with the one gap, and other sites' uploads still go through (G7: no ship can stall the others)."""

from __future__ import annotations

import time

import pytest

from .conftest import chain, harbour, make_segment, rows_table

pytestmark = pytest.mark.integration

HUGE_SEQ = 10**12


@pytest.mark.guarantee("G7", "G8")
def test_a_segment_at_seq_10_to_the_12_does_not_hang_fleet_status(hub):
    token, operator = hub.add_site("ship-far"), hub.add_operator("ops")
    far = make_segment("ship-far", "telemetry", HUGE_SEQ, rows_table(0, 5))
    assert hub.upload(token, far).committed
    near = chain("ship-far", "telemetry", 2)
    for segment in near:
        assert hub.upload(token, segment).committed

    for _ in range(3):  # the history sampler and the status page call the same report: none of them may hang
        started = time.monotonic()
        answer = hub.request("GET", "/v1/fleet", {"Authorization": f"Bearer {operator}"}, timeout=10)
        elapsed = time.monotonic() - started
        assert answer.status == 200, answer.body
        assert elapsed < 0.5, f"/v1/fleet took {elapsed:.2f} s"
    (site,) = [s for s in answer.json()["sites"] if s["site"] == "ship-far"]
    table = site["tables"]["telemetry"]
    assert (table["watermark"], table["highest_seq"], table["gaps"]) == (2, HUGE_SEQ, [[3, HUGE_SEQ - 1]])
    assert table["chain_breaks"] == []  # seq 10^12 - 1 is missing: nothing to compare its prev-sha256 with

    result = harbour("hub", "status", "--data", str(hub.data))
    assert f"3-{HUGE_SEQ - 1}" in result.stdout

    other = hub.add_site("ship-near")
    assert hub.upload(other, chain("ship-near", "telemetry", 1)[0]).committed
