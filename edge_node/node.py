"""The edge node's core, without HTTP: accept a write, make it durable, seal, collect, report.

Theory of operation. ``write`` checks and conforms the rows to the table's schema on the event loop
(one thread, so two writers cannot evolve a schema at the same time), then queues them for the log.
One flush task drains the queue: everything queued while the previous group was being fsync'd forms
the next group, appended and fsync'd on the log's own thread (group commit: many writers share one
fsync). A writer's future resolves only after its group is durable -- that is the ack of G1.

Two background steps run on a sealer thread, woken when a log rolls and every housekeeping interval:
sealing closed logs into segments, and collecting acked segments whose retention ended (earlier under
quota pressure). Their failures are logged and retried; they never lose a row, because a log is only
deleted after its segment is committed in the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.ipc as pa_ipc

from sync_protocol import ErrorCode, RemoteProtocolError, TableName

from . import durable, schemas, sealer, wal
from .config import FRESH_SEAL_SECONDS, QUOTA_PRESSURE_FRACTION, SEAL_POLL_SECONDS, EdgeConfig
from .datasets import DatasetStore
from .ledger import SegmentLedger
from .managed import SettingsKeeper
from .quota import DiskQuota, Usage

NO_HUB_STATE = "no hub configured: data is kept on board only"

log = logging.getLogger(__name__)

WAL_DIR = "wal"
QUARANTINE_DIR = "quarantine"


@dataclass
class IngestStats:
    """Counters for the bench and status: how well group commit shares fsyncs."""

    groups: int = 0
    appends: int = 0
    rows: int = 0


def _ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa_ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


class SyncHooks(Protocol):
    """What the node asks of the sync service (``edge_node.sync.service.SyncService`` has it). A Protocol, so
    that the node does not import the sync layer above it: ``edge_node.runner`` wires the two together."""

    state_line: str  # what the link is doing, quoted in status and in 507 answers

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def notify(self) -> None: ...
    def seals_early(self, priority: int, class_pending: bool) -> bool: ...
    def describe(self, pending_bytes: int) -> dict[str, Any]: ...
    def reconfigure(self, config: EdgeConfig) -> None: ...


def durability_error(error: OSError, wal_dir: object) -> RemoteProtocolError:
    """What a writer is answered when its group could not be made durable: 507 when the disk is full (the
    same answer as a full quota: wait, or free space), else 500; both say the write was not stored."""
    full = error.errno in (errno.ENOSPC, errno.EDQUOT)
    return RemoteProtocolError(
        f"the write could not be made durable: {error.strerror or error}",
        code=ErrorCode.DISK_FULL if full else ErrorCode.INTERNAL, op="writing the write-ahead log",
        subject=str(wal_dir),
        hint=("the ship's disk is full: free space on it (df -h); " if full else
              "check the ship's disk (dmesg, smartctl); ") + "the write was not stored and may be resent")


class EdgeNode:
    def __init__(self, config: EdgeConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self.clock = clock
        self.data_dir = config.data_dir
        durable.make_dirs(self.data_dir)
        self.ledger = SegmentLedger(self.data_dir, config.site, clock)
        self.ledger.claim_site()
        self.wal = wal.WriteAheadLog(self.data_dir / WAL_DIR, clock, config.seal_bytes)
        self.quota = DiskQuota(config.max_disk_bytes)
        self.datasets = DatasetStore(self.data_dir, clock)  # reference data from the hub (readable offline)
        self._dataset_bytes = self.datasets.bytes_on_disk()  # refreshed by housekeeping: a glob per write is too dear
        self.stats = IngestStats()
        self._schemas: dict[str, pa.Schema] = {}
        self._segment_usage = (0, 0, 0)
        self._queue: list[tuple[wal.Append, asyncio.Future]] = []
        self._flush_task: asyncio.Task | None = None
        self._wal_thread = ThreadPoolExecutor(1, thread_name_prefix="harbour-wal")
        self._seal_thread = ThreadPoolExecutor(1, thread_name_prefix="harbour-sealer")
        self._wake_sealer = asyncio.Event()
        self._background: asyncio.Task | None = None
        self.sync: SyncHooks | None = None  # set by the runner when a hub is configured
        self.managed: SettingsKeeper | None = None  # set by the runner: the managed settings and their outcome

    @property
    def sync_state(self) -> str:
        """One line on what the link is doing, quoted in status and in 507 answers."""
        return self.sync.state_line if self.sync is not None else NO_HUB_STATE

    # -- start-up ---------------------------------------------------------------------------------

    def recover(self) -> None:
        """Repair what a crash left behind. Reads only pending logs and per-table ledger rows, so its
        cost does not grow with the number of acked segments."""
        sealer.remove_stray_tmp_files(self.data_dir)
        scans = self.wal.recover(self.ledger.sealed_log_upto, self.data_dir / QUARANTINE_DIR)
        self._schemas = self.ledger.table_schemas()
        for scan in scans:
            first = next(wal.iter_records(scan.path))
            table = scan.path.parent.name
            written = wal.read_record(first).schema
            self._schemas[table] = schemas.merge_recovered(table, self._schemas.get(table), written)
        self._segment_usage = self.ledger.stored_bytes()
        log.info("recovered %s: %d tables, %d unsealed logs", self.data_dir, len(self._schemas), len(scans))

    async def start(self) -> None:
        self._background = asyncio.create_task(self._housekeeping())
        if self.sync is not None:
            await self.sync.start()

    async def stop(self) -> None:
        if self.sync is not None:
            await self.sync.stop()
        if self._background:
            self._background.cancel()
            await asyncio.gather(self._background, return_exceptions=True)
        if self._flush_task:
            await asyncio.gather(self._flush_task, return_exceptions=True)
        self._wal_thread.shutdown(wait=True)
        self._seal_thread.shutdown(wait=True)
        self.wal.close()
        self.ledger.close()

    # -- writes -----------------------------------------------------------------------------------

    def usage(self) -> Usage:
        total, pending, count = self._segment_usage
        log_bytes = sum(self.wal.pending_summary(t).size for t in self.wal.tables())
        return Usage(total, pending, count, log_bytes, self._dataset_bytes)

    def reconfigure(self, config: EdgeConfig) -> None:
        """Run with ``config`` from now on (managed settings changed): priorities, seal size and age, and the
        sync service's link settings. Segments already sealed keep the class they were sealed with."""
        self.config = config
        self.wal.seal_bytes = config.seal_bytes
        if self.sync is not None:
            self.sync.reconfigure(config)

    def check_quota(self, incoming: int) -> None:
        self.quota.check(self.usage(), incoming, sync_state=self.sync_state)

    async def write(self, table: TableName, data: pa.Table) -> int:
        """Store ``data`` durably; returns its row count once it is on disk (raises RemoteProtocolError)."""
        name = str(table)
        normalized = schemas.normalize(data)
        merged = schemas.merge(name, self._schemas.get(name), normalized.schema)
        conformed = schemas.conform(normalized, merged)
        if conformed.num_rows == 0:
            return 0
        payload = _ipc_bytes(conformed)
        # The one quota check of a write, on the bytes that will land in the log (a body's length says little:
        # CSV or JSON shrinks, Parquet grows when decoded).
        self.check_quota(len(payload))
        self._schemas[name] = merged
        future = asyncio.get_running_loop().create_future()
        self._queue.append((wal.Append(name, conformed.schema, payload, conformed.num_rows), future))
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.create_task(self._flush())
        await future
        return conformed.num_rows

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            group, self._queue = self._queue, []
            appends = [item for item, _ in group]
            try:
                rolled = await loop.run_in_executor(self._wal_thread, self.wal.append_group, appends)
            except OSError as error:
                log.error("could not make %d writes durable: %s", len(group), error)
                failure = durability_error(error, self.data_dir / WAL_DIR)
                for _, future in group:
                    if not future.done():
                        future.set_exception(failure)
                continue
            self.stats.groups += 1
            self.stats.appends += len(group)
            self.stats.rows += sum(item.rows for item in appends)
            for _, future in group:
                if not future.done():
                    future.set_result(None)
            if rolled or any(self.config.priority_of(item.table) == 0 for item in appends):
                self._wake_sealer.set()  # alarms are sealed at once: no need to wait for the next poll

    # -- sealing and collection ----------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        loop = asyncio.get_running_loop()
        last_round = float("-inf")
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_sealer.wait(), SEAL_POLL_SECONDS)
            self._wake_sealer.clear()
            try:
                pending = await asyncio.to_thread(self.ledger.pending_priorities) if self.sync else set()
                seal_age_of = self._seal_age_of(pending)
                await loop.run_in_executor(self._wal_thread, self.wal.roll_older_than, seal_age_of)
                if not self.wal.has_closed_logs and loop.time() - last_round < self.config.housekeeping_interval:
                    continue
                last_round = loop.time()
                self._dataset_bytes = await asyncio.to_thread(self.datasets.bytes_on_disk)
                await loop.run_in_executor(self._seal_thread, self.seal_and_collect)
                if self.sync is not None:
                    self.sync.notify()  # a new segment may be waiting: no need to wait for the agent's poll
            except Exception:  # a sealing fault must not stop ingest; the logs keep every row meanwhile
                log.exception("sealing or collection failed; retrying in %.0f s -- check disk space and "
                              "permissions of %s", self.config.housekeeping_interval, self.data_dir)
                await asyncio.sleep(self.config.housekeeping_interval)

    def _seal_age_of(self, pending: set[int]) -> Callable[[str], float]:
        """How old each open log may grow before it is sealed: ``FRESH_SEAL_SECONDS`` (class 0: at once)
        when the link can take it now (``LinkPolicy.seals_early``), else the configured seal age."""
        open_tables = self.wal.open_tables()
        if self.sync is None or not open_tables:
            return lambda table: self.config.seal_age_seconds
        ages = {}
        for table in open_tables:
            priority = self.config.priority_of(table)
            early = self.sync.seals_early(priority, priority in pending)
            ages[table] = (0.0 if priority == 0 else FRESH_SEAL_SECONDS) if early else self.config.seal_age_seconds
        return lambda table: ages.get(table, self.config.seal_age_seconds)

    def seal_and_collect(self) -> None:
        """One round of background work (also called directly by tests and at shutdown)."""
        self.seal_closed_logs()
        self.collect()

    def seal_closed_logs(self) -> int:
        self.wal.has_closed_logs = False
        sealed = 0
        for table in self.wal.tables():
            for path in self.wal.closed_logs(table):
                sealer.seal_log(
                    self.data_dir, self.config.site, table, path, self.ledger, table_schema=self._schemas[table],
                    priority=self.config.priority_of(table), clock=self.clock,
                    quarantine=self.data_dir / QUARANTINE_DIR)
                self.wal.forget(table, path)
                sealed += 1
        self._segment_usage = self.ledger.stored_bytes()
        return sealed

    def collect(self) -> int:
        """Delete acked segments past retention, and under quota pressure any acked ones, oldest first."""
        under_pressure = self.usage().total >= QUOTA_PRESSURE_FRACTION * self.quota.max_bytes
        cutoff = self.clock() if under_pressure else self.clock() - self.config.retention_seconds
        collected = 0
        for stored in self.ledger.collectable(cutoff):
            (self.data_dir / stored.path).unlink(missing_ok=True)
            self.ledger.mark_collected(stored.manifest.segment)
            collected += 1
        self._segment_usage = self.ledger.stored_bytes()
        return collected

    def roll_all(self) -> None:
        """Close every open log so the next sealing round takes everything (tests, bench)."""
        for table in self.wal.tables():
            self.wal.roll(table)

    def table_schema(self, table: str) -> pa.Schema | None:
        return self._schemas.get(table)
