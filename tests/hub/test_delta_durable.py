"""``hub.delta_durable.sync_versions``: a Delta version delta-rs wrote survives a power cut once synced."""

from __future__ import annotations

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from hub.delta_durable import added_files, sync_versions
from hub.durable import make_dirs


@pytest.mark.guarantee("G2")
@pytest.mark.parametrize("synced", [True, False])
def test_a_synced_version_survives_a_power_cut_and_an_unsynced_one_need_not(powercut, synced):
    make_dirs(powercut.path / "tables")
    table = powercut.path / "tables" / "telemetry"
    rows = pa.table({"_site": ["ship-a", "ship-b"] * 50, "v": list(range(100))})
    write_deltalake(str(table), rows, partition_by=["_site"])
    write_deltalake(str(table), rows, partition_by=["_site"], mode="append")
    if synced:
        sync_versions(table, 0, 1)
    powercut.cut("/", 5)
    if synced:
        assert DeltaTable(str(table)).to_pyarrow_table().num_rows == 200
    else:
        assert not (table / "_delta_log" / "00000000000000000001.json").exists(), "delta-rs fsyncs after all"


def test_added_files_are_the_commits_data_files(tmp_path):
    write_deltalake(str(tmp_path / "t"), pa.table({"_site": ["a b"], "v": [1]}), partition_by=["_site"])
    (added,) = added_files(tmp_path / "t" / "_delta_log" / "00000000000000000000.json")
    assert (tmp_path / "t" / added).is_file()
