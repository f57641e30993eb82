"""Freshness figures: which segment holds a write, when that segment's Delta commit happened."""

from __future__ import annotations

import json

import pyarrow as pa
from deltalake import CommitProperties, write_deltalake

from scenarios.freshness import merge_times, percentiles, segment_ranges, write_delays


def test_each_write_is_timed_to_the_merge_of_the_segment_holding_it():
    ranges = segment_ranges([("aurora", 1, 0, 9), ("aurora", 2, 10, 19), ("borealis", 1, 100, 109)])
    acks = [(0, 100.0), (5, 100.5), (10, 101.0), (20, 102.0)]  # the last was never merged
    delays = write_delays(acks, ranges["aurora"], {1: 101.5, 2: 104.0})
    assert delays == [1.5, 1.0, 3.0]
    assert percentiles(delays) == {"writes": 3, "p50": 1.5, "p99": 2.97, "max": 3.0}
    assert percentiles([]) is None


def test_merge_times_come_from_the_delta_commits_that_list_the_segments(tmp_path):
    table = tmp_path / "alarms"
    for keys in (["aurora.alarms.1", "borealis.alarms.1"], ["aurora.alarms.2"]):
        write_deltalake(str(table), pa.table({"x": [1]}), mode="append", commit_properties=CommitProperties(
            custom_metadata={"harbour.segments": json.dumps(keys)}))
    times = merge_times(table)
    assert set(times) == {("aurora", 1), ("borealis", 1), ("aurora", 2)}
    assert times[("aurora", 1)] <= times[("aurora", 2)]
    assert merge_times(tmp_path / "missing") == {}
