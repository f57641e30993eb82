"""Edge-local limits and settings, each with the reason it has its value.

Limits both peers must agree on live in ``sync_protocol.limits``; the ones here only concern one ship's
node and may differ between ships. ``EdgeConfig`` is the one settings type of an edge process: the CLI
builds it from flags (sizes and durations parsed by ``sync_protocol.units``), the runner wires the node and
the sync service from it, and tests build it directly with small values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sync_protocol import SiteId, limits
from sync_protocol.downlink import DEFAULT_DATASET_PRIORITY

from .sync.link import DEFAULT_THIN_BELOW_BPS, DEFAULT_THIN_MAX_CLASS

DEFAULT_LISTEN = "127.0.0.1:8701"
"""The contract's default: loopback only, so nothing off the ship's host reaches the ingest API by accident."""

MAX_REQUEST_BODY_BYTES = 64 * 1024 * 1024
"""Largest ingest body (413 above it). A body is decoded in memory, so this bounds one request's memory;
64 MiB is about a million telemetry rows, far more than any on-board application sends in one write."""

MAX_INFLIGHT_BODY_BYTES = 256 * 1024 * 1024
"""Bodies being read and decoded at once share this budget; further requests wait for room. It keeps the
node's memory bounded however many applications write at the same moment (G7)."""

MAX_COLUMNS = limits.MAX_COLUMNS  # the widest write and table (sync_protocol.limits)

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

DEFAULT_MAX_IN_FLIGHT = 64
"""Cap on uploads at once (each is one TCP connection). 100 Mbit/s with 600 ms RTT holds 7.5 MB per round
trip; a port-call backlog of 1-2 MB segments sealed by age at sea needs ~40 uploads at once to keep such a
link 90% busy (see ``SyncAgent._target_in_flight``); 64 leaves room without exhausting the hub's worker
threads."""


DEFAULT_REPORT_SECONDS = 30.0
"""How often the edge reports to the hub (its backlog, and the datasets and settings it holds) and so learns
the desired state: fresh enough for a morning look at the fleet page and for a price change to start
downloading within a minute, a few hundred bytes each time, so negligible even on a metered link."""


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
    log_level: str = "INFO"
    # Sync: without hub_url and hub_token the node keeps everything on board.
    hub_url: str | None = None
    hub_token: str | None = field(default=None, repr=False)  # never printed in logs
    hub_token_file: Path | None = None  # read again whenever it changes: a rotated token needs no restart
    hub_ca: Path | None = None  # a private CA that signed the hub's certificate
    max_upload_rate_bps: float | None = None  # bits per second; None: no cap
    metered: bool = False
    thin_below_bps: float = DEFAULT_THIN_BELOW_BPS
    thin_max_class: int = DEFAULT_THIN_MAX_CLASS
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    seed: int | None = None  # of the sync's back-off jitter; None: a fresh one, logged so that it can be replayed
    # Managed settings (edge_node.managed) set on board -- flag, environment or config file -- win over the hub's.
    pinned: frozenset[str] = frozenset()
    report_seconds: float = DEFAULT_REPORT_SECONDS

    @property
    def syncs(self) -> bool:
        """Whether a hub is configured to sync to (else data is kept on board only)."""
        return bool(self.hub_url and self.hub_token)

    def __post_init__(self) -> None:
        for name in ("seal_bytes", "max_disk_bytes", "max_body_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.seal_age_seconds <= 0 or self.retention_seconds < 0:
            raise ValueError("seal age must be positive and retention not negative")

    def priority_of(self, table: str) -> int:
        return self.priorities.get(table, DEFAULT_PRIORITY)

    def dataset_priority_of(self, dataset: str) -> int:
        """A reference dataset's download class: its ``--priority`` entry, else ``DEFAULT_DATASET_PRIORITY``."""
        return self.priorities.get(dataset, DEFAULT_DATASET_PRIORITY)
