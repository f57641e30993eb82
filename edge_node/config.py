"""Edge-local limits and settings, each with the reason it has its value.

Limits both peers must agree on live in ``sync_protocol.limits``; the ones here only concern one ship's
node and may differ between ships. ``EdgeConfig`` is the validated settings of one running node; the
CLI builds it from flags, and tests build it directly with small values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from sync_protocol import SiteId

DEFAULT_LISTEN = "127.0.0.1:8701"
"""The contract's default: loopback only, so nothing off the ship's host reaches the ingest API by accident."""

MAX_REQUEST_BODY_BYTES = 64 * 1024 * 1024
"""Largest ingest body (413 above it). A body is decoded in memory, so this bounds one request's memory;
64 MiB is about a million telemetry rows, far more than any on-board application sends in one write."""

MAX_INFLIGHT_BODY_BYTES = 256 * 1024 * 1024
"""Bodies being read and decoded at once share this budget; further requests wait for room. It keeps the
node's memory bounded however many applications write at the same moment (G7)."""

MAX_COLUMNS = 1024
"""Widest accepted table. Parquet and DuckDB cope with more, but a write with thousands of columns is almost
always a JSON document mistaken for a row, and each column costs per-segment metadata on a thin link."""

DEFAULT_SEAL_BYTES = 64 * 1024 * 1024
"""A table's write-ahead log is sealed into a segment at this size. 64 MiB of Arrow becomes ~10-25 MiB of
Parquet: large enough to compress well and keep per-segment overhead low, small enough that a cut upload
costs little (sync_protocol.limits.MAX_SEGMENT_BYTES is 512 MiB)."""

DEFAULT_SEAL_AGE_SECONDS = 300.0
"""...or once its oldest row is this old, when the link is down, thin, metered or busy with that class
(otherwise logs are sealed within about a second: ``FRESH_SEAL_SECONDS``). At sea, five minutes of rows
make one segment instead of three hundred."""

FRESH_SEAL_SECONDS = 1.0
"""While the link can take it (up, not thin, nothing of the class waiting), a table's open log is sealed
once its first row is this old: rows written within a second share a segment, and a row reaches the hub
within seconds instead of after the seal age. Class 0 is sealed at once. Each segment costs ~3 KB of
requests and Parquet footer; at 0.5 s, the 20-ship voyage put 1.08x the rows' Arrow bytes on the wire."""

SEAL_POLL_SECONDS = 0.25
"""How often the node looks at its open logs' ages (a cheap check; sealing itself runs only when a log
closed, and collection every ``SEAL_CHECK_INTERVAL_SECONDS``)."""

DEFAULT_MAX_DISK_BYTES = 20 * 1024**3
"""Disk quota for the data directory. 20 GiB holds weeks of typical telemetry at sea; operators size it to
the ship's disk with --max-disk."""

DEFAULT_RETENTION_SECONDS = 7 * 24 * 3600.0
"""Acked segments stay on the ship this long so the crew can still query them locally; under quota pressure
they are collected earlier, since the hub already holds them durably."""

DEFAULT_PRIORITY = 5
"""Priority class of a table nobody configured: the middle of 0 (alarms) .. 9 (bulk)."""

SEAL_CHECK_INTERVAL_SECONDS = 1.0
"""How often the node looks for logs to seal by age and acked segments to collect."""

QUOTA_PRESSURE_FRACTION = 0.9
"""Above this share of the quota, acked segments are collected before their retention ends: the hub holds
them, and keeping the crew's local copy matters less than taking new writes."""

PARQUET_ROW_GROUP_ROWS = 128 * 1024
"""Rows buffered per Parquet row group while sealing: bounds the sealer's memory, and big enough groups
compress well (many WAL records hold a handful of rows each)."""

PARQUET_ROW_GROUP_BYTES = 32 * 1024 * 1024
"""...or this many bytes of Arrow data, whichever comes first, so that wide rows do not blow the bound."""

PARQUET_COMPRESSION_LEVEL = 1
"""zstd level 1: measured 356-404 MB/s with a ratio within ~15% of level 3 (perf-limits.md)."""

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\s*", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
               "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|)\s*")
_DURATION_UNITS = {"ms": 0.001, "": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_size(text: str) -> int:
    """``20GiB``, ``512MB``, ``64mib``, ``1000`` (bytes) -> bytes."""
    match = _SIZE.fullmatch(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a size; write e.g. 20GiB, 512MB or 1048576")
    unit = match.group(2).lower().removesuffix("b")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_duration(text: str) -> float:
    """``300``, ``30s``, ``5m``, ``2h``, ``7d`` -> seconds."""
    match = _DURATION.fullmatch(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a duration; write e.g. 30s, 5m, 2h or 7d")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def format_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{value:.1f} TiB"


@dataclass(frozen=True)
class EdgeConfig:
    site: SiteId
    data_dir: Path
    seal_bytes: int = DEFAULT_SEAL_BYTES
    seal_age_seconds: float = DEFAULT_SEAL_AGE_SECONDS
    max_disk_bytes: int = DEFAULT_MAX_DISK_BYTES
    retention_seconds: float = DEFAULT_RETENTION_SECONDS
    priorities: dict[str, int] = field(default_factory=dict)
    max_body_bytes: int = MAX_REQUEST_BODY_BYTES
    housekeeping_interval: float = SEAL_CHECK_INTERVAL_SECONDS
    hub_url: str | None = None
    hub_token: str | None = field(default=None, repr=False)  # never printed in logs

    def __post_init__(self) -> None:
        for name in ("seal_bytes", "max_disk_bytes", "max_body_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.seal_age_seconds <= 0 or self.retention_seconds < 0:
            raise ValueError("seal age must be positive and retention not negative")

    def priority_of(self, table: str) -> int:
        return self.priorities.get(table, DEFAULT_PRIORITY)
