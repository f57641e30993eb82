"""`harbour hub quarantine`: list, show and release set-aside segments; a release merges exactly once through
the normal path, and a segment that still does not fit comes back with its reason."""

from __future__ import annotations

import json
import time

import pyarrow as pa
import pytest

from hub.merger import Merger
from hub.quarantine_cli import release
from hub.staging import StagingArea
from sync_protocol.merge_states import MergeState

from .conftest import harbour, make_segment, rows_table


@pytest.mark.guarantee("G2", "G7")
def test_a_restored_file_released_from_quarantine_merges_exactly_once(layout, ledger, clock):
    staging = StagingArea(layout)
    merger = Merger(layout, ledger, staging, clock, min_commit_interval=0.0)
    segment = make_segment("ship-a", "telemetry", 1, rows_table(0, 3))
    staging.path(segment.manifest.segment).write_bytes(b"PAR1 damaged on the hub's disk")
    ledger.commit(segment.manifest, 1.0)
    merger.run_once()
    assert [q.segment for q in ledger.quarantined()] == [segment.manifest.segment]
    layout.quarantined_file(segment.manifest.segment).write_bytes(segment.data)  # restored from a backup
    assert release(ledger, staging, [segment.manifest.segment]) == [
        "released ship-a/telemetry/1: it merges within seconds on a running hub"]
    assert ledger.segment_state(segment.manifest.segment) is MergeState.COMMITTED
    merger.run_once()
    merger.run_once()
    assert ledger.quarantined() == [] and ledger.segment_state(segment.manifest.segment) is MergeState.MERGED
    from hub.query import run_query
    assert run_query(layout, "SELECT count(*), count(DISTINCT row_id) FROM telemetry").rows == [(3, 3)]


@pytest.mark.integration
@pytest.mark.guarantee("G7")
def test_list_show_and_release_through_the_command_on_a_running_hub(hub):
    tokens = {site: hub.add_site(site) for site in ("ship-a", "ship-b")}
    hub.upload(tokens["ship-a"], make_segment("ship-a", "sales", 1, rows_table(0, 4)))
    hub.wait_merged(4, "sales")
    bad = make_segment("ship-b", "sales", 1, pa.table({"row_id": ["not", "a", "number"]}))
    assert hub.upload(tokens["ship-b"], bad).committed
    deadline = time.monotonic() + 30
    while "ship-b/sales/1" not in (listing := harbour("hub", "quarantine", "--data", str(hub.data)).stdout):
        assert time.monotonic() < deadline, listing
        time.sleep(0.3)
    assert "1 quarantined segment(s)" in listing and "row_id" in listing
    shown = harbour("hub", "quarantine", "show", "ship-b/sales/1", "--data", str(hub.data), "--format", "json")
    assert [row["row_id"] for row in json.loads(shown.stdout)] == ["not", "a", "number"]

    again = harbour("hub", "quarantine", "release", "--all", "--data", str(hub.data))
    assert again.stdout.strip() == "released ship-b/sales/1: it merges within seconds on a running hub"
    deadline = time.monotonic() + 30  # it still does not fit: back in quarantine with the reason, no row merged
    while "ship-b/sales/1" not in harbour("hub", "quarantine", "--data", str(hub.data)).stdout:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert hub.query("SELECT count(*) AS n FROM sales") == [{"n": 4}]

    unknown = harbour("hub", "quarantine", "release", "ship-a/sales/1", "--data", str(hub.data), check=False)
    assert unknown.returncode == 1 and "cannot be released" in unknown.stderr  # merged, not quarantined
    bad_name = harbour("hub", "quarantine", "show", "nonsense", "--data", str(hub.data), check=False)
    assert bad_name.returncode == 2 and "SITE/TABLE/SEQ" in bad_name.stderr
    neither = harbour("hub", "quarantine", "release", "--data", str(hub.data), check=False)
    assert neither.returncode == 2 and "--all" in neither.stderr
