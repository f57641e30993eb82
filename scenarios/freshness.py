"""Freshness: how long after the edge's 200 a row was queryable at the hub, per ship and table.

Three facts, each from where it is true:

* when the application was told "stored": the scenario's own clock at the edge's ``200`` (``WriteLog``);
* which segment holds the row: the merged table's lineage columns ``_site`` and ``_seq`` (a query);
* when that segment became queryable: the timestamp of the Delta commit whose metadata lists it
  (``harbour.segments``, written by the hub's merger for people reading the log).

All three clocks are this machine's wall clock, so a figure is real seconds. A write whose rows were not
merged (lost, refused) has no figure; the checker counts those.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from sync_protocol import SegmentId

SEGMENTS_KEY = "harbour.segments"
FLEET = "(fleet)"
"""The key of the figures pooled over every ship."""


@dataclass(frozen=True)
class SegmentRows:
    """Row-id range of one merged segment of one ship's table."""

    first_id: int
    last_id: int
    seq: int


def merge_times(table_dir: Path) -> dict[tuple[str, int], float]:
    """(site, seq) -> wall time (s) of the Delta commit that made the segment queryable."""
    try:
        history = DeltaTable(str(table_dir)).history()
    except (TableNotFoundError, OSError):
        return {}
    times: dict[tuple[str, int], float] = {}
    for commit in history:
        keys = commit.get(SEGMENTS_KEY)
        if not keys or "timestamp" not in commit:
            continue
        for key in json.loads(keys) if isinstance(keys, str) else keys:
            segment = SegmentId.from_upload_key(key)
            times[(str(segment.site), segment.seq)] = commit["timestamp"] / 1000
    return times


def segment_ranges(rows: Iterable[tuple[str, int, int, int]]) -> dict[str, list[SegmentRows]]:
    """``(site, seq, min row_id, max row_id)`` rows of the merged table -> per site, ranges by first id."""
    by_site: dict[str, list[SegmentRows]] = {}
    for site, seq, first, last in rows:
        by_site.setdefault(site, []).append(SegmentRows(int(first), int(last), int(seq)))
    for ranges in by_site.values():
        ranges.sort(key=lambda r: r.first_id)
    return by_site


def write_delays(acks: list[tuple[int, float]], ranges: list[SegmentRows], merged: dict[int, float]) -> list[float]:
    """Seconds from each acked write (first row id, ack time) to the merge of the segment holding it."""
    firsts = [r.first_id for r in ranges]
    delays = []
    for first_id, acked_at in acks:
        index = bisect.bisect_right(firsts, first_id) - 1
        if index < 0 or ranges[index].last_id < first_id:
            continue
        merged_at = merged.get(ranges[index].seq)
        if merged_at is not None:
            delays.append(max(0.0, merged_at - acked_at))
    return delays


def percentiles(delays: list[float]) -> dict[str, float | int] | None:
    if not delays:
        return None
    values = np.asarray(delays)
    return {"writes": len(delays), "p50": round(float(np.percentile(values, 50)), 2),
            "p99": round(float(np.percentile(values, 99)), 2), "max": round(float(values.max()), 2)}
