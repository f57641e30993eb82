"""Local SQL over the ship's own data, offline: ``harbour edge query --data DIR "SQL"``.

Each edge table is a DuckDB view over its segment files still on disk plus the rows still in its
write-ahead log, so the crew sees every acknowledged row, sealed or not. It works while the node runs:

* logs are read first, then the ledger. A log sealed in between is in that ledger snapshot (the
  sealer commits before it deletes the log), so its read copy is dropped in favour of the segment:
  no row is counted twice or missed.
* a segment collected between the snapshot and DuckDB's read makes the query retry with a new snapshot.

Reference datasets from the hub (``edge_node.datasets``) are views ``reference.<name>`` over their current
version: the file the pointer names is opened once and memory-mapped (nothing is read that the query does not
touch), so a switch during the query changes nothing of what it reads.
"""

from __future__ import annotations

import mmap
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.ipc as pa_ipc

from . import schemas, wal
from .datasets import DatasetStore
from .ledger import SegmentLedger

WAL_VIEW_PREFIX = "__harbour_log_"
REFERENCE_SCHEMA = "reference"
REFERENCE_VIEW_PREFIX = "__harbour_reference_"
QUERY_ATTEMPTS = 3
"""Snapshot retries when segments are collected under a running query; more than one in a row is unlikely."""


def _read_logs(data_dir: Path) -> dict[str, list[tuple[int, pa.Table]]]:
    found: dict[str, list[tuple[int, pa.Table]]] = {}
    root = data_dir / "wal"
    for directory in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        for path in wal.list_logs(directory):
            try:
                parts = [wal.read_record(r) for r in wal.iter_records(path)]
            except FileNotFoundError:
                continue  # sealed and deleted since the listing: the ledger snapshot taken next has it
            if parts:
                table = pa.concat_tables(parts, promote_options="permissive")
                found.setdefault(directory.name, []).append((wal.log_number(path), table))
    return found


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def connect(data_dir: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per edge table."""
    data_dir.mkdir(parents=True, exist_ok=True)  # the contract: query creates DIR if it is new
    logs = _read_logs(data_dir)
    ledger = SegmentLedger(data_dir, None, clock=time.time)
    try:
        site = str(ledger.stored_site() or "")
        files, sealed_upto = ledger.segment_files()
    finally:
        ledger.close()
    con = duckdb.connect()
    for table in sorted(set(files) | set(logs)):
        parts = []
        if files.get(table):
            paths = ", ".join(_quote(str(data_dir / p)) for p in files[table])
            parts.append(f"SELECT * FROM read_parquet([{paths}], union_by_name = true)")
        unsealed = [t for number, t in logs.get(table, []) if number > sealed_upto.get(table, 0)]
        if unsealed:
            rows = pa.concat_tables(unsealed, promote_options="permissive")
            rows = rows.append_column(schemas.SITE_COLUMN, pa.array([site] * rows.num_rows, pa.string()))
            con.register(WAL_VIEW_PREFIX + table, rows)
            parts.append(f"SELECT * FROM {WAL_VIEW_PREFIX}{table}")
        if parts:
            # Quoted: a table may be named like an SQL keyword ("null", "order"); unquoted, every query failed.
            con.execute(f'CREATE VIEW "{table}" AS ' + " UNION ALL BY NAME ".join(parts))
    attach_reference(con, DatasetStore(data_dir, time.time))
    return con


def attach_reference(con: duckdb.DuckDBPyConnection, store: DatasetStore) -> None:
    """Schema ``reference`` with one view per dataset on board, over its current version."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {REFERENCE_SCHEMA}")
    for name in store.names():
        opened = store.open_current(name)
        if opened is None:
            continue
        _, handle = opened
        with handle:
            try:  # mapped from the open file: zero-copy, and valid even if a switch prunes the file meanwhile
                mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
                table = pa_ipc.open_stream(pa.BufferReader(pa.py_buffer(mapped))).read_all()
            except (pa.ArrowException, OSError, ValueError):
                continue  # empty, or not an Arrow stream: not queryable
        con.register(REFERENCE_VIEW_PREFIX + name, table)
        con.execute(f"CREATE VIEW {REFERENCE_SCHEMA}.{name} AS SELECT * FROM {REFERENCE_VIEW_PREFIX}{name}")


def run_query(data_dir: Path, sql: str) -> pa.Table:
    for attempt in range(QUERY_ATTEMPTS):
        con = connect(data_dir)
        try:
            relation = con.sql(sql)
            return relation.to_arrow_table() if relation is not None else pa.table({})
        except duckdb.IOException:
            if attempt == QUERY_ATTEMPTS - 1:
                raise
        finally:
            con.close()
    raise AssertionError("unreachable")
