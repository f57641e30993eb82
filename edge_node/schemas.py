"""Table schemas on the edge: what a write may contain, and how a table's schema evolves.

A table's schema is the union of every column ever written to it, each at the widest type seen. A
write may leave columns out (they read as NULL), add new ones, or carry a narrower type of the same
kind (int32 into an int64 column; an integer into a float64 column); the table's schema widens when a
write carries a wider type (int32 column, int64 write). A change of kind (a string column written as
an integer) is a conflict: the write is refused with 400 and a message naming the column, because the
hub could not merge such a segment either and would quarantine it.

Writes are conformed to the table's schema before they reach the log, so that consecutive writes of a
table share one schema and one segment; a segment only ends early when the table's schema evolves.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.ipc as pa_ipc
import pyarrow.types as pat

from sync_protocol import ErrorCode, RemoteProtocolError, schema_fingerprint

from .config import MAX_COLUMNS

COLUMN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,127}")
"""Column names need no quoting in DuckDB, SQLite, PostgreSQL or Spark. A leading ``_`` is kept for the
lineage columns (``_site``) that Harbour adds."""

SITE_COLUMN = "_site"

_SIGNED = [pa.int8(), pa.int16(), pa.int32(), pa.int64()]
_UNSIGNED = [pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64()]
_FLOATS = [pa.float32(), pa.float64()]
_TIME_UNITS = ["s", "ms", "us", "ns"]


def _bad(message: str, subject: str, hint: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, code=ErrorCode.BAD_REQUEST, op="checking schema", subject=subject, hint=hint)


def _supported(dtype: pa.DataType) -> bool:
    """Types that Parquet, DuckDB and the hub's merged tables all store without loss."""
    if pat.is_list(dtype) or pat.is_large_list(dtype):
        return _supported(dtype.value_type)
    if pat.is_struct(dtype):
        return all(_supported(dtype.field(i).type) for i in range(dtype.num_fields))
    return any(check(dtype) for check in (
        pat.is_null, pat.is_boolean, pat.is_integer, pat.is_float32, pat.is_float64, pat.is_decimal,
        pat.is_string, pat.is_binary, pat.is_date, pat.is_timestamp, pat.is_time,
    ))


def _normal_type(dtype: pa.DataType) -> pa.DataType:
    """One spelling per kind: dictionary columns become their values, large strings plain strings
    (bodies are far below 2 GiB), float16 float32 (Parquet readers disagree about float16)."""
    if pat.is_dictionary(dtype):
        dtype = dtype.value_type
    if pat.is_large_string(dtype):
        return pa.string()
    if pat.is_large_binary(dtype):
        return pa.binary()
    if pat.is_float16(dtype):
        return pa.float32()
    return dtype


def normalize(table: pa.Table) -> pa.Table:
    """Check a decoded write's columns and give it the normal spelling of its types (400 on a bad column)."""
    if table.num_columns == 0:
        raise _bad("the write has no columns", "columns", "send at least one column")
    if table.num_columns > MAX_COLUMNS:
        raise _bad(f"the write has {table.num_columns} columns; at most {MAX_COLUMNS} are accepted", "columns",
                   "split very wide records into several tables, or send nested data as a JSON string column")
    seen: set[str] = set()
    fields = []
    for column in table.schema:
        name = column.name
        if not COLUMN_NAME.fullmatch(name):
            raise _bad(f"column name {name[:80]!r} is not valid: use 1-128 of A-Z, a-z, 0-9 and '_', "
                       "starting with a letter (names starting with '_' are kept for Harbour's lineage columns)",
                       name[:80], "rename the column in the sending application")
        if name.lower() in seen:
            raise _bad(f"column {name!r} appears twice (column names are case-insensitive)", name,
                       "send each column once")
        seen.add(name.lower())
        dtype = _normal_type(column.type)
        if not _supported(dtype):
            raise _bad(f"column {name!r} has type {column.type}, which Harbour does not store", name,
                       "send it as string, integer, float, decimal, boolean, date, time, timestamp or binary")
        fields.append(pa.field(name, dtype, nullable=True))
    target = pa.schema(fields)
    return table if table.schema.equals(target) else table.cast(target)


def _widens(narrow: pa.DataType, wide: pa.DataType) -> bool:
    """True when every value of ``narrow`` is exactly a value of ``wide``."""
    if narrow.equals(wide) or pat.is_null(narrow):
        return True
    for chain in (_SIGNED, _UNSIGNED, _FLOATS):
        if narrow in chain and wide in chain:
            return chain.index(narrow) <= chain.index(wide)
    if narrow in _UNSIGNED and wide in _SIGNED:
        return narrow.bit_width < wide.bit_width
    if pat.is_timestamp(narrow) and pat.is_timestamp(wide):
        return narrow.tz == wide.tz and _TIME_UNITS.index(narrow.unit) <= _TIME_UNITS.index(wide.unit)
    if pat.is_decimal(narrow) and pat.is_decimal(wide):
        return wide.scale >= narrow.scale and wide.precision - wide.scale >= narrow.precision - narrow.scale
    return False


def _fits(written: pa.DataType, column: pa.DataType) -> bool:
    """A written type the column accepts without changing: a widening, or integers into float64 (JSON
    writers send ``1`` and ``1.5`` to the same field). The cast is checked, so a huge int still fails."""
    return _widens(written, column) or (pat.is_integer(written) and column.equals(pa.float64()))


def merge(table_name: str, current: pa.Schema | None, written: pa.Schema) -> pa.Schema:
    """The table's schema after ``written`` (already normalized); raises 400 naming a conflicting column."""
    if current is None:
        return written
    by_lower = {field.name.lower(): field for field in current}
    merged = {field.name: field for field in current}
    for field in written:
        existing = by_lower.get(field.name.lower())
        if existing is None:
            merged[field.name] = field
        elif existing.name != field.name:
            raise _bad(f"column {field.name!r} differs only in case from column {existing.name!r} of table "
                       f"{table_name!r}", field.name, f"send it as {existing.name!r}")
        elif _fits(field.type, existing.type):
            continue
        elif _widens(existing.type, field.type):
            merged[field.name] = field
        else:
            raise _bad(f"column {field.name!r} of table {table_name!r} is {existing.type}, but this write "
                       f"has it as {field.type}", field.name,
                       f"send {field.name!r} as {existing.type} (or a narrower type of the same kind), "
                       "or write the new kind of data to a new column or table")
    return pa.schema(list(merged.values()))


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns, in its order; missing columns are NULL."""
    if table.schema.equals(schema):
        return table
    columns = []
    for field in schema:
        index = table.schema.get_field_index(field.name)
        if index < 0:
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        try:
            columns.append(table.column(index).cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise _bad(f"column {field.name!r} does not fit type {field.type}: {str(error)[:200]}", field.name,
                       f"send values that fit {field.type}") from None
    return pa.Table.from_arrays(columns, schema=schema)


def canonical_text(schema: pa.Schema) -> str:
    """The canonical form fingerprinted in a segment's manifest: names and types, in order."""
    return ";".join(f"{field.name}:{field.type}" for field in schema)


def fingerprint(schema: pa.Schema) -> str:
    return schema_fingerprint(canonical_text(schema))


def serialize(schema: pa.Schema) -> bytes:
    return schema.serialize().to_pybytes()


def deserialize(data: bytes) -> pa.Schema:
    return pa_ipc.read_schema(pa.py_buffer(data))
