"""The merger: committed segments -> Delta Lake tables, in batches, exactly once across crashes (G2).

Theory of operation
-------------------
One background thread (deltalake's runtime must not be forked, and Delta commits to one table are
serial anyway) repeats, per table with committed segments waiting:

1. take up to ``MAX_BATCH_SEGMENTS`` of them (bounded by ``MAX_BATCH_ROWS``); read each Parquet file
   and fit its schema to the table's canonical schema (``hub.schema``). A segment that does not fit
   (type conflict, reserved column, unreadable file, row count not the manifest's) is **quarantined**:
   its file moves to ``DIR/quarantine``, the ledger keeps the reason, status shows it, and the batch
   goes on without it, so one bad segment never blocks a site's later ones;
2. **plan** the batch in the ledger: a new, increasing ``batch_id`` and the list of its segments;
3. append the rows (plus lineage columns ``_site``, checked in step 1, ``_seq``, ``_ingested_at``) with one
   ``write_deltalake`` call whose commit carries the Delta *application transaction*
   ``(MERGER_APP_ID, batch_id)`` and, for people reading the log, the segment list in its metadata;
4. **finish** the batch in the ledger, then delete the merged segments' files.

A crash between 2 and 4 leaves an open batch. On start, ``reconcile`` asks the Delta table for the
last application-transaction version of ``MERGER_APP_ID``: if it is at least the batch id, the append
happened and the batch is finished; otherwise it did not and the segments go back to waiting. Batches of
one table are written in id order by this one thread, so "at least" is exact.

In a hub cluster every process runs a merger, and each table is merged by one process at a time: a round takes
the table's shared lock (``SharedLocks``, a PostgreSQL advisory lock) or leaves the table to whoever holds it.
Whoever takes a table first settles its open batches as above, so a process that died mid-merge is taken over by
the next one to get the lock; batch ids come from the shared ledger's sequence, and the batches of a table are
still planned and written one after the other, under its lock. The states a segment and a
batch go through are ``sync_protocol.merge_states`` (``MERGE_TRANSITIONS``, ``BATCH_TRANSITIONS``). Many
small commits make a Delta table slow (research: 21 -> 66 ms per commit over 500 commits), hence the
batching, plus a periodic ``optimize.compact()`` and ``vacuum``.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake.exceptions import TableNotFoundError

from sync_protocol import LocalProtocolError, RemoteProtocolError, table_values
from sync_protocol.identifiers import SegmentId, TableName
from sync_protocol.limits import MAX_SEGMENT_DECODED_BYTES
from sync_protocol.merge_states import MergeState
from sync_protocol.units import format_size

from . import delta_durable
from . import schema as schemas
from .faults import CrashHook, no_crash
from .layout import HubLayout
from .ledger import CommittedSegment, MergeBatch, SegmentLedger
from .segment_size import decoded_bytes
from .staging import StagingArea
from .upload_storage import SharedLocks

log = logging.getLogger("harbour.hub.merger")

MERGER_APP_ID = "harbour-hub-merger"

MAX_BATCH_SEGMENTS = 512
"""Segments per Delta commit. With 20 ships sending small segments a batch still becomes one commit;
the transaction log stays short (one commit per batch instead of one per segment)."""

MAX_BATCH_ROWS = 4_000_000
"""Rows held in memory for one commit: ~250 MB of Arrow at the ~60 B/row of telemetry, well inside
the hub's memory, and large enough that Parquet files come out near their ideal size."""

MANY_PARTITIONS = 16
"""A commit with this many ships (Delta partitions) or more closes each ship's file early (``_target_file_size``):
below it, the open writers cost under 20 MiB."""

SMALL_PARTITION_ROWS = 8192
"""...provided no ship brings more rows than this to the commit (at most 8 files of 1,024 rows for one ship)."""

CLOSE_AT_ONCE_FILE_BYTES = 1
"""A target file size every chunk reaches: each partition's file is written and closed as soon as it has rows."""

IDLE_POLL_SECONDS = 2.0
"""How often an idle merger looks for work it was not woken for (e.g. after reconcile)."""

MIN_COMMIT_INTERVAL_SECONDS = 1.0
"""A table gets at most one merge commit this often. An idle merger merges a new segment at once; a busy
one gathers what arrives from the whole fleet meanwhile into the next commit, so twenty ships sending a
segment a second make one commit a second per table, not twenty (each commit costs ~50-200 ms and one
more entry in the Delta log that every reader replays)."""

MAX_REASON_CHARS = 300
"""How much of Delta's error a quarantine reason quotes: its first line says what was refused; the rest is a
Rust backtrace."""

COMPACT_EVERY_COMMITS = 100
"""Compact a table after this many merge commits (Delta checkpoints every 100 commits as well)."""

VACUUM_RETENTION_HOURS = 168
"""Files removed by compaction are deleted a week later: queries running over an older snapshot and
copies to object storage have that long to finish."""

class MergeLockLost(Exception):
    """This process no longer holds the table it was merging (its ledger connection dropped)."""


@dataclass(frozen=True)
class ReadSegment:
    """A committed segment read for a merge: its data columns in storage types (values checked once, here) and
    its lineage column ``_site`` (the edge's own, once checked, or the hub's for a segment without one)."""

    segment: CommittedSegment
    data: pa.Table
    site: pa.ChunkedArray


@dataclass
class MergeStats:
    rows: int = 0
    commits: int = 0
    quarantined: int = 0


class Merger:
    def __init__(
        self, layout: HubLayout, ledger: SegmentLedger, staging: StagingArea, clock: Callable[[], float],
        *, crash: CrashHook = no_crash, max_batch_segments: int = MAX_BATCH_SEGMENTS,
        min_commit_interval: float = MIN_COMMIT_INTERVAL_SECONDS, shared_locks: SharedLocks | None = None,
    ) -> None:
        self._layout = layout
        self._shared_locks = shared_locks
        self._ledger = ledger
        self._staging = staging
        self._clock = clock
        self._crash = crash
        self._max_segments = max_batch_segments
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._commits_since_compact: dict[str, int] = {}
        self._min_interval = min_commit_interval
        self._last_commit_at: dict[str, float] = {}  # monotonic time of each table's last merge commit
        self._deferred_until: float | None = None  # when a table left for its commit interval may merge
        self.stats = MergeStats()
        self.last_error: str | None = None

    # -- the background thread -----------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="harbour-merger", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look for work now instead of at the next poll. Takes no segment: what to merge is read from the
        ledger, so a wake lost to a crash or a race costs at most one poll interval, never a segment."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._next_wait())
            self._wake.clear()
            try:
                while not self._stop.is_set() and self.run_once():
                    pass
                self.last_error = None
            except Exception as error:  # keep merging other work later; the log says what failed
                self.last_error = str(error)
                log.exception("merge failed; will retry")
                self._stop.wait(IDLE_POLL_SECONDS)

    # -- one round -----------------------------------------------------------------------------------

    def run_once(self) -> int:
        """Merge one batch of every table with waiting segments whose last commit is at least
        ``MIN_COMMIT_INTERVAL_SECONDS`` old; returns segments handled. A table whose merge fails (its
        storage, not its segments: those are quarantined) does not hold back the tables after it; the
        first failure is raised once every table had its turn."""
        handled = 0
        failure: Exception | None = None
        self._deferred_until = None
        for table in self._ledger.tables_pending():
            last = self._last_commit_at.get(str(table))
            if last is not None and time.monotonic() - last < self._min_interval:
                due = last + self._min_interval
                self._deferred_until = due if self._deferred_until is None else min(self._deferred_until, due)
                continue
            try:
                handled += self._merge_table_exclusively(table)
            except Exception as error:
                if failure is not None:
                    log.exception("merging %s failed as well; will retry", table)
                failure = failure or error
        if failure is not None:
            raise failure
        return handled

    def _merge_table_exclusively(self, table: TableName) -> int:
        """``merge_table``, in a cluster only while holding the table (else another process merges it now)."""
        if self._shared_locks is None:
            return self.merge_table(table)
        name = _lock_name(table)
        if not self._shared_locks.try_lock(name):
            return 0
        try:
            self._settle(table)  # batches a process that died (or lost the lock) left open
            return self.merge_table(table)
        finally:
            self._shared_locks.unlock(name)

    def _next_wait(self) -> float:
        """Until a deferred table may commit again, else the idle poll."""
        if self._deferred_until is None:
            return IDLE_POLL_SECONDS
        return max(0.01, min(IDLE_POLL_SECONDS, self._deferred_until - time.monotonic()))

    def _table(self, table: TableName) -> DeltaTable | None:
        try:
            return DeltaTable(self._layout.table_uri(table))
        except TableNotFoundError:
            return None

    @staticmethod
    def _stored_schema(delta: DeltaTable | None) -> pa.Schema | None:
        return pa.schema(delta.schema().to_arrow()) if delta is not None else None

    def merge_table(self, table: TableName) -> int:
        waiting = self._ledger.pending(table, self._max_segments)
        if not waiting:
            return 0
        current = schemas.canonical(self._stored_schema(self._table(table)))
        accepted: list[ReadSegment] = []
        rows = 0
        for segment in waiting:
            if accepted and rows + segment.manifest.row_count > MAX_BATCH_ROWS:
                break
            read, problem = self._read(segment)
            if read is not None:
                fitted = schemas.plan(str(table), current, read.data.schema)
                if fitted.schema is None:
                    problem = "schema conflict: " + "; ".join(fitted.conflicts)
            if problem is not None:
                self._quarantine(segment, problem)
                continue
            current = fitted.schema
            accepted.append(read)
            rows += read.data.num_rows
        if accepted:
            self._append_isolating(table, accepted)
        return len(waiting)

    def _read(self, segment: CommittedSegment) -> tuple[ReadSegment | None, str | None]:
        """The segment's rows in storage types (``sync_protocol.table_values``), or why it cannot be merged."""
        path = self._staging.path(segment.segment)
        try:  # the commit checked the decoded size; this is for files committed before it did, or restored
            if decoded_bytes(path, stop_above=MAX_SEGMENT_DECODED_BYTES) > MAX_SEGMENT_DECODED_BYTES:
                return None, f"its rows take more than {format_size(MAX_SEGMENT_DECODED_BYTES)} once decoded"
            data = pq.read_table(path)
        except FileNotFoundError:
            return None, f"segment file {path.name} is missing from {path.parent}"
        except Exception as error:  # whatever a damaged or hostile file makes the reader raise
            return None, f"not a readable Parquet file: {type(error).__name__}: {str(error)[:300]}"
        if data.num_rows != segment.manifest.row_count:
            return None, f"file has {data.num_rows} rows, its manifest says {segment.manifest.row_count}"
        data, site, conflict = schemas.split_site(data, str(segment.segment.site))
        if conflict:
            return None, conflict
        try:  # the edge checked these values too; the hub checks again because any tus client may upload
            return ReadSegment(segment, schemas.to_storage(data), site), None
        except RemoteProtocolError as error:
            return None, f"the type rules refuse it: {error.message}"
        except Exception as error:  # a value no rule foresaw must cost one segment, not the table
            log.exception("checking the values of %s failed", segment.segment)
            return None, f"its values could not be checked: {type(error).__name__}: {str(error)[:300]}"

    def _quarantine(self, segment: CommittedSegment, reason: str) -> None:
        log.warning("quarantined %s: %s (file kept in %s)", segment.segment, reason, self._layout.quarantine)
        self._staging.quarantine(segment.segment)
        self._ledger.quarantine(segment.segment, reason, self._clock())
        self.stats.quarantined += 1

    # -- appending, and narrowing a refused batch down to its culprits ------------------------------

    def _append_isolating(self, table: TableName, accepted: list[ReadSegment]) -> None:
        """Append ``accepted``. When Delta refuses the batch for a reason the type rules did not foresee,
        halve it until the refused segments stand alone: those are quarantined with Delta's reason, the
        rest merge (G7: one segment never stalls a table, nor the tables after it). An ``OSError`` is the
        disk or the object store, not the segments: it is raised, and the batch retried next round."""
        try:
            self._append(table, accepted)
            return
        except (OSError, MergeLockLost):
            raise
        except Exception as error:
            if len(accepted) == 1:
                self._blame(table, accepted[0], error)
                return
            log.warning("Delta refused a batch of %d segments of %s (%s); narrowing it down", len(accepted), table,
                        _first_line(error))
        middle = len(accepted) // 2
        self._append_isolating(table, accepted[:middle])
        self._append_isolating(table, accepted[middle:])

    def _blame(self, table: TableName, item: ReadSegment, error: Exception) -> None:
        """Quarantine a segment Delta refused alone -- but only once the same rows are refused by a scratch
        table of the same schema too: otherwise the table (or its storage) is at fault, and it is retried."""
        if not self._refused_alone(table, item):
            raise error
        self._quarantine(item.segment, f"Delta Lake refused its rows: {_first_line(error)}")

    def _refused_alone(self, table: TableName, item: ReadSegment) -> bool:
        stored = self._stored_schema(self._table(table))
        with tempfile.TemporaryDirectory(prefix=".merge-probe-", dir=self._layout.root) as scratch:
            if stored is not None:
                DeltaTable.create(scratch, schema=stored, partition_by=[schemas.SITE_COLUMN])
            current = schemas.canonical(stored)
            fitted = schemas.plan(str(table), current, item.data.schema)
            try:
                _write(scratch, self._rows(fitted.schema, [item]))
            except OSError:
                raise
            except Exception:
                return True
        return False

    def _rows(self, schema: pa.Schema, accepted: list[ReadSegment]) -> pa.Table:
        """The batch's rows: each segment conformed to ``schema`` (the one conform of its rows at the hub), plus the
        lineage columns."""
        parts = []
        for item in accepted:
            conformed = schemas.conform(item.data, schema)
            n = conformed.num_rows
            ingested = int(item.segment.committed_at * 1_000_000)
            lineage = [
                item.site,
                pa.array([item.segment.segment.seq] * n, pa.int64()),
                pa.array([ingested] * n, pa.timestamp("us", tz="UTC")),
            ]
            parts.append(pa.Table.from_arrays(
                [*conformed.columns, *lineage], schema=pa.schema([*schema, *schemas.LINEAGE_FIELDS])))
        return pa.concat_tables(parts)

    def _append(self, table: TableName, accepted: list[ReadSegment]) -> None:
        delta = self._table(table)
        stored = self._stored_schema(delta)
        schema = schemas.canonical(stored)
        # Planned together in merge_table; planned again here (schemas only, no rows) because a batch Delta
        # refused is appended in halves: each half fits the table as the halves before it left it, and gets no
        # column that only the other half brings.
        for item in accepted:
            fitted = schemas.plan(str(table), schema, item.data.schema)
            if fitted.schema is None:
                raise LocalProtocolError(f"{item.segment.segment} no longer fits {table}: {fitted.conflicts}",
                                         op="planning a merge batch", subject=str(table))
            schema = fitted.schema
        if delta is not None:
            self._widen(table, delta, stored, schema)
        batch_rows = self._rows(schema, accepted)
        planned = self._ledger.plan_batch(table, [item.segment.segment for item in accepted])
        self._crash("before-delta-commit")
        if self._shared_locks is not None and not self._shared_locks.holds(_lock_name(table)):
            # The ledger connection holding the table dropped: another process may own it now and settle this
            # batch. Leave it to them (writing now could add the rows a second time).
            raise MergeLockLost(f"lost the merge lock of {table} before its commit; another hub process takes over")
        metadata = {"harbour.batch": str(planned.batch_id),
                    "harbour.segments": json.dumps([s.segment.upload_key for s in planned.segments])}
        try:
            _write(self._layout.table_uri(table), batch_rows, commit_properties=CommitProperties(
                custom_metadata=metadata, app_transactions=[Transaction(MERGER_APP_ID, planned.batch_id)]))
        except Exception:
            # Nothing was committed (a Delta commit is one atomic rename): put the segments back so
            # the next round retries them instead of leaving them in an open batch until a restart.
            self._ledger.abandon_batch(planned.batch_id)
            raise
        self._crash("after-delta-commit")
        version = self._table(table).version()
        self._make_durable(table, -1 if delta is None else delta.version() + 1, version)
        self._ledger.finish_batch(planned.batch_id, version, self._clock())
        self._last_commit_at[str(table)] = time.monotonic()
        for item in accepted:
            self._staging.delete(item.segment.segment)
        self.stats.rows += batch_rows.num_rows
        self.stats.commits += 1
        log.info("merged %d segments (%d rows) into %s at version %s", len(accepted), batch_rows.num_rows,
                 table, version)
        self._maybe_compact(table)

    def _make_durable(self, table: TableName, first: int, last: int) -> None:
        """fsync Delta versions ``first``..``last`` of a local table (``hub.delta_durable``: delta-rs does not)."""
        if not self._layout.remote_warehouse:
            delta_durable.sync_versions(self._layout.tables / str(table), first, last)

    def _widen(self, table: TableName, delta: DeltaTable, stored: pa.Schema, planned: pa.Schema) -> None:
        """Give existing columns the wider types ``planned`` has for them, where Delta cannot do so in place
        (``hub.schema.in_place``): one streamed rewrite of the table, its own commit. Bounded memory (a
        record batch at a time); the old files stay until vacuum, so readers of older snapshots are fine,
        and a crash half-way leaves the table as it was (its new files are never committed)."""
        changes = {field.name: field.type for field in planned
                   if field.name in stored.names and not schemas.in_place(stored.field(field.name).type, field.type)}
        if not changes:
            return
        target = pa.schema([pa.field(field.name, changes.get(field.name, field.type)) for field in stored])
        described = ", ".join(f"{name}: {stored.field(name).type} -> {kind}" for name, kind in changes.items())
        log.warning("widening %s (%s): rewriting the table once", table, described)

        dataset = delta.to_pyarrow_dataset()  # opened here: delta-rs cannot start it inside its own writer

        def retyped(batch: pa.RecordBatch, field: pa.Field) -> pa.ChunkedArray:
            convert = table_values.convert_column if field.name in changes else table_values.widen_column
            return convert(batch.column(field.name), field.type, field.name)

        def batches():
            for batch in dataset.to_batches():
                columns = [retyped(batch, field) for field in target]
                yield from pa.Table.from_arrays(columns, schema=target).to_batches()

        _write(self._layout.table_uri(table), pa.RecordBatchReader.from_batches(target, batches()),
               mode="overwrite", schema_mode="overwrite",
               commit_properties=CommitProperties(custom_metadata={"harbour.widened": described}))

    # -- recovery and maintenance --------------------------------------------------------------------

    def reconcile(self) -> tuple[int, int]:
        """Settle batches left open by a crash, and delete files of segments already merged (a crash
        after the ledger update); returns (finished, abandoned)."""
        finished = abandoned = 0
        for path in self._layout.uploads.glob("*.seg"):
            try:
                segment = SegmentId.from_upload_key(path.name.removesuffix(".seg"))
            except Exception:  # not one of ours: leave it for the operator
                continue
            if self._ledger.segment_state(segment) is MergeState.MERGED:
                path.unlink(missing_ok=True)
        for table in sorted({batch.table for batch in self._ledger.open_batches()}, key=str):
            if self._shared_locks is None:
                done, dropped = self._settle(table)
            elif self._shared_locks.try_lock(_lock_name(table)):
                try:
                    done, dropped = self._settle(table)
                finally:
                    self._shared_locks.unlock(_lock_name(table))
            else:
                continue  # another process merges it: its open batch is that process's own
            finished, abandoned = finished + done, abandoned + dropped
        return finished, abandoned

    def _settle(self, table: TableName) -> tuple[int, int]:
        """Finish or abandon the open batches of ``table`` (held by this process); returns (finished, abandoned)."""
        finished = abandoned = 0
        for batch in self._ledger.open_batches():
            if batch.table != table:
                continue
            if self._reached_table(batch):
                finished += 1
            else:
                self._ledger.abandon_batch(batch.batch_id)
                abandoned += 1
                log.info("batch %d of %s never reached the table; its segments merge again", batch.batch_id,
                         batch.table)
        return finished, abandoned

    def _reached_table(self, batch: MergeBatch) -> bool:
        """If the table's log holds the batch's application transaction, finish the batch and say so."""
        delta = self._table(batch.table)
        applied = delta.transaction_version(MERGER_APP_ID) if delta is not None else None
        if applied is None or applied < batch.batch_id:
            return False
        # The batch's commit is the table's latest version (nothing is written to a table between its append
        # and finish_batch), and a crash may have left it in the page cache only.
        self._make_durable(batch.table, delta.version(), delta.version())
        self._ledger.finish_batch(batch.batch_id, delta.version(), self._clock())
        for segment in batch.segments:
            self._staging.delete(segment.segment)
        log.info("batch %d of %s had reached the table before the crash; finished", batch.batch_id, batch.table)
        return True

    def _maybe_compact(self, table: TableName) -> None:
        count = self._commits_since_compact.get(str(table), 0) + 1
        self._commits_since_compact[str(table)] = count
        if count >= COMPACT_EVERY_COMMITS:
            self._commits_since_compact[str(table)] = 0
            self.maintain(table)

    def maintain(self, table: TableName) -> None:
        """Compact small files and delete files no snapshot younger than the retention needs."""
        delta = self._table(table)
        if delta is None:
            return
        before = delta.version()
        delta.optimize.compact(writer_properties=WriterProperties(compression="ZSTD"))
        delta.update_incremental()
        self._make_durable(table, before + 1, delta.version())  # before vacuum deletes what it replaced
        delta.vacuum(retention_hours=VACUUM_RETENTION_HOURS, dry_run=False)
        delta.cleanup_metadata()
        log.info("compacted and vacuumed %s (retention %s)", table, timedelta(hours=VACUUM_RETENTION_HOURS))


def _write(path: str, data: pa.Table | pa.RecordBatchReader, *, mode: str = "append", schema_mode: str = "merge",
           commit_properties: CommitProperties | None = None) -> None:
    """Every Delta write of the merger, so that the scratch probe writes exactly as the real append does."""
    write_deltalake(path, data, mode=mode, schema_mode=schema_mode, partition_by=[schemas.SITE_COLUMN],
                    writer_properties=WriterProperties(compression="ZSTD"), commit_properties=commit_properties,
                    target_file_size=_target_file_size(data))


def _target_file_size(data: pa.Table | pa.RecordBatchReader) -> int | None:
    """delta-rs keeps one Parquet writer open per partition (here: per ship) until the end of a write, unless
    the partition's file reaches the target size; each open writer holds ~1.2 MiB (measured: one commit of
    200 ships' 400-row segments took 250 MiB, of 20 ships 60 MiB). A commit that gathers many ships' small
    segments therefore gets a tiny target: each partition's file is closed as soon as a chunk (one segment)
    is written. delta-rs also cuts files at its 1,024-row write batches under such a target, so it is used
    only while no ship brings more than ``SMALL_PARTITION_ROWS``: at most a few files per ship, compacted
    later (``COMPACT_EVERY_COMMITS``). Otherwise delta-rs's default (one file per ship, up to ~100 MiB)."""
    if not isinstance(data, pa.Table) or data.num_rows == 0:
        return None
    per_site = pc.value_counts(data[schemas.SITE_COLUMN]).field("counts")
    if len(per_site) < MANY_PARTITIONS or pc.max(per_site).as_py() > SMALL_PARTITION_ROWS:
        return None
    return CLOSE_AT_ONCE_FILE_BYTES


def _lock_name(table: TableName) -> str:
    return f"merge:{table}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:MAX_REASON_CHARS]
