"""Table schemas on the edge: the shared type rules of ``sync_protocol.table_types``, applied at ingest.

A table's schema is the union of every column ever written to it, each at its widest storage type. A
write is first brought to storage types (``normalize``: int32 -> int64, any timestamp -> UTC
microseconds, ...; values checked for range and UTF-8), then fitted to the table (``merge``): it may
leave columns out (they read as NULL), add new ones, or carry a type that widens the column (int64 ->
float64, date -> timestamp, a decimal with more digits, a struct with more fields). A column spelled
differently only in case folds into the existing column. A change of kind (a string column written as
an integer) is refused with 400 and a message naming the column, both types and the rule, because the
hub runs the same rules and would quarantine such a segment.

Writes are conformed to the table's schema before they reach the log, so that consecutive writes of a
table share one schema and one segment; a segment only ends early when the table's schema evolves.
"""

from __future__ import annotations

import logging

import pyarrow as pa
import pyarrow.ipc as pa_ipc

from sync_protocol import ErrorCode, RemoteProtocolError, limits, schema_fingerprint, table_types, table_values

from .config import MAX_COLUMNS

MAX_WRITE_ROWS = limits.MAX_SEGMENT_ROWS  # a log is sealed at this many rows: one write must fit in one segment

log = logging.getLogger(__name__)

COLUMN_NAME = table_types.COLUMN_NAME
SITE_COLUMN = "_site"


def normalize(table: pa.Table) -> pa.Table:
    """A decoded write in storage types, its names and values checked (400 on the first problem)."""
    if table.num_columns == 0:
        raise RemoteProtocolError("the write has no columns", code=ErrorCode.BAD_REQUEST, op="checking schema",
                                  subject="columns", hint="send at least one column")
    if table.num_columns > MAX_COLUMNS:
        raise RemoteProtocolError(
            f"the write has {table.num_columns} columns; at most {MAX_COLUMNS} are accepted",
            code=ErrorCode.BAD_REQUEST, op="checking schema", subject="columns",
            hint="split very wide records into several tables, or send nested data as a JSON string column")
    if table.num_rows > MAX_WRITE_ROWS:
        raise RemoteProtocolError(
            f"the write has {table.num_rows} rows; at most {MAX_WRITE_ROWS} are accepted in one write",
            code=ErrorCode.BAD_REQUEST, op="checking schema", subject="rows", hint="send it in several writes")
    problems = table_types.column_problems(table.schema)
    if problems:
        raise problems[0].error()
    return table_values.to_storage(table)


def _current(current: pa.Schema | None) -> pa.Schema | None:
    """A table's schema as these rules store it. Schemas recorded before them may hold narrower types
    (brought to storage types) or types no longer stored (left out: they could not be merged anyway)."""
    if current is None:
        return None
    stored, dropped = table_types.storage_schema(current)
    if dropped:
        log.warning("columns %s of a table's schema have types Harbour does not store; new segments leave them "
                    "out", ", ".join(dropped))
    return stored


def merge(table_name: str, current: pa.Schema | None, written: pa.Schema) -> pa.Schema:
    """The table's schema after ``written``; raises 400 naming a conflicting column, both types and the rule."""
    plan = table_types.plan(table_name, _current(current), written)
    plan.raise_first()
    assert plan.schema is not None
    if len(plan.schema) > MAX_COLUMNS:
        raise RemoteProtocolError(
            f"table {table_name} would have {len(plan.schema)} columns with this write; a table has at most "
            f"{MAX_COLUMNS}", code=ErrorCode.BAD_REQUEST, op="checking schema", subject=table_name,
            hint="write the new columns to another table, or send nested data as a JSON string column")
    return plan.schema


def merge_recovered(table_name: str, current: pa.Schema | None, written: pa.Schema) -> pa.Schema:
    """``merge`` for a log found at start-up: its rows are acknowledged already, so a schema the rules
    refuse (written before them) must not stop the node; the table keeps ``current`` and the log is sealed
    as it is (the hub quarantines what it cannot merge, with the reason)."""
    try:
        return merge(table_name, current, written)
    except RemoteProtocolError as error:
        log.warning("table %s: a log written before the current type rules does not fit them: %s", table_name,
                    error)
        return _current(current) or pa.schema([])


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` (normalized) with exactly ``schema``'s columns, in its order; missing columns are NULL."""
    return table_values.conform(table, schema)


def canonical_text(schema: pa.Schema) -> str:
    """The canonical form fingerprinted in a segment's manifest: names and types, in order."""
    return ";".join(f"{field.name}:{field.type}" for field in schema)


def fingerprint(schema: pa.Schema) -> str:
    return schema_fingerprint(canonical_text(schema))


def serialize(schema: pa.Schema) -> bytes:
    return schema.serialize().to_pybytes()


def deserialize(data: bytes) -> pa.Schema:
    return pa_ipc.read_schema(pa.py_buffer(data))
