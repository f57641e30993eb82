"""Values into storage types, with every check on: no wrapped, cut or invalid value is ever stored.

``table_types`` decides the types; this module moves values into them. The edge calls ``to_storage``
on each decoded write and ``conform`` to fit it to the table; the hub calls both on each segment, so a
value the edge accepted converts at the hub the same way, and one it refused never reaches Delta. The hub
checks again what an edge checked because it cannot know the uploader is an unmodified Harbour edge (any tus
client may send a segment): the values are checked once per side, in ``to_storage``; ``conform`` only widens.

Checks, each refused with a message that names the column:

* **Ranges.** Timestamps and dates must lie in 0001-01-01 .. 9999-12-31 (UTC), the range Delta Lake's
  protocol defines (and Python's ``datetime``, which the hub's JSON answers use). Checked on the raw
  values *before* any cast, so a ``timestamp[s]`` of 10^13 is refused instead of wrapping to 265698 BC.
* **Overflow.** Casts run with Arrow's overflow checks: a uint64 above int64's range, a decimal that does
  not fit its new precision, a list of more than 2^31 items are refused.
* **UTF-8.** Strings (at any depth) must be valid UTF-8: DuckDB fails every ``SELECT *`` over a table
  holding one invalid string, whatever site wrote the other rows.

Two conversions are allowed to lose detail, and are documented as the type rules: nanoseconds are
truncated (towards zero) to microseconds, and an integer beyond 2^53 widened to float64 rounds to the
nearest float64.

Nested values are rebuilt field by field (not cast by Arrow as a whole), so that struct fields are
matched ignoring case -- the table's spelling wins -- and missing fields read as null.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pat

from .errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from .table_types import TypeRefused, is_list_like, storage_type, wider_type

SECONDS_PER_DAY = 86_400
FIRST_DAY = -719_162
"""0001-01-01 as days since 1970-01-01: the first date Delta Lake (and Python's ``datetime``) holds."""
LAST_DAY = 2_932_896
"""9999-12-31 as days since 1970-01-01: the last one."""

_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}

VALUE_RANGE = "0001-01-01 to 9999-12-31 (UTC)"

CAST_OPTIONS = {"allow_time_truncate": True, "allow_float_truncate": True}
"""The only loosened checks. Time truncation: nanoseconds -> microseconds, and a date64's time of day.
Float truncation: Arrow's name for the int64 -> float64 rounding beyond 2^53; a float is never cast to an
integer, because no rule narrows a type (``_cast`` asserts it)."""


class ValueRefused(RemoteProtocolError):
    def __init__(self, column: str, message: str, hint: str) -> None:
        super().__init__(message, code=ErrorCode.BAD_REQUEST, op="checking values", subject=repr(column), hint=hint)
        self.column = column


def _bounds(dtype: pa.DataType) -> tuple[int, int] | None:
    """The stored-value range of a raw timestamp or date type, in its own unit."""
    if pat.is_timestamp(dtype):
        if dtype.unit == "ns":
            return None  # int64 nanoseconds cover 1677..2262 only: always inside the range
        per_second = _PER_SECOND[dtype.unit]
        return FIRST_DAY * SECONDS_PER_DAY * per_second, (LAST_DAY + 1) * SECONDS_PER_DAY * per_second - 1
    if pat.is_date32(dtype):
        return FIRST_DAY, LAST_DAY
    if pat.is_date64(dtype):
        per_day = SECONDS_PER_DAY * 1_000
        return FIRST_DAY * per_day, (LAST_DAY + 1) * per_day - 1
    return None


def leaves(array: pa.Array, path: str) -> Iterator[tuple[str, pa.Array]]:
    """Every non-nested array inside ``array`` with its column path; values under null parents excluded."""
    t = array.type
    if pat.is_dictionary(t):
        yield from leaves(array.dictionary, path)
    elif pat.is_struct(t):
        for index, child in enumerate(array.flatten()):
            yield from leaves(child, f"{path}.{t.field(index).name}")
    elif is_list_like(t) or pat.is_map(t):
        yield from leaves(array.flatten(), f"{path}[]")
    else:
        yield path, array


def check_ranges(array: pa.Array, column: str) -> None:
    """Refuse a timestamp or date outside ``VALUE_RANGE`` anywhere in ``array`` (raw, before any cast)."""
    for path, leaf in leaves(array, column):
        bounds = _bounds(leaf.type)
        if bounds is None or len(leaf) == leaf.null_count:
            continue
        numbers = leaf.cast(pa.int32() if pat.is_date32(leaf.type) else pa.int64())
        extremes = pc.min_max(numbers)
        for value in (extremes["min"].as_py(), extremes["max"].as_py()):
            if not bounds[0] <= value <= bounds[1]:
                raise ValueRefused(path, f"column {path!r} holds the {leaf.type} value {value}, outside what "
                                   f"Harbour stores: dates and timestamps from {VALUE_RANGE}",
                                   f"send {path!r} in the Arrow unit its numbers are in (seconds, milliseconds, ...),"
                                   " within that range")


def check_utf8(column: pa.ChunkedArray | pa.Array, name: str) -> None:
    """Refuse invalid UTF-8 in strings (and any other malformed buffer) anywhere in ``column``."""
    try:
        column.validate(full=True)
    except pa.ArrowInvalid as error:
        detail = str(error).splitlines()[0][:200]
        if "utf8" in detail.lower():
            raise ValueRefused(name, f"column {name!r} holds text that is not valid UTF-8 ({detail})",
                               "send strings as UTF-8; send other bytes as a binary column") from None
        raise ValueRefused(name, f"column {name!r} holds values that break Arrow's own rules ({detail})",
                           "fix the sending application's Arrow or Parquet writer") from None


def _chunks(column: pa.ChunkedArray | pa.Array) -> list[pa.Array]:
    return column.chunks if isinstance(column, pa.ChunkedArray) else [column]


def _map_chunks(column: pa.ChunkedArray | pa.Array, target: pa.DataType,
                convert: Callable[[pa.Array], pa.Array]) -> pa.ChunkedArray:
    return pa.chunked_array([convert(chunk) for chunk in _chunks(column)], type=target)


def _cast(array: pa.Array, target: pa.DataType, column: str) -> pa.Array:
    """``array`` as ``target`` (a storage type at least as wide as the array's own storage type)."""
    if pat.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pat.is_null(target):
        return pa.nulls(len(array))
    if pat.is_null(array.type):
        return pa.nulls(len(array), target)
    if pat.is_struct(target):
        return _cast_struct(array, target, column)
    if pat.is_list(target):
        lengths = pc.fill_null(pc.list_value_length(array), 0).cast(pa.int32())
        offsets = pa.concat_arrays([pa.array([0], pa.int32()), pc.cumulative_sum_checked(lengths)])
        values = _cast(array.flatten(), target.value_type, f"{column}[]")
        return pa.ListArray.from_arrays(offsets, values, type=target, mask=array.is_null())
    try:
        return pc.cast(array, options=pc.CastOptions(target, **CAST_OPTIONS))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        detail = str(error).splitlines()[0][:200]
        raise ValueRefused(column, f"column {column!r} holds a value that does not fit {target}: {detail}",
                           f"send values that fit {target}") from None


def _cast_struct(array: pa.Array, target: pa.StructType, column: str) -> pa.Array:
    source = array.type
    children = dict(zip((source.field(i).name.lower() for i in range(source.num_fields)), array.flatten(),
                        strict=True))
    arrays = []
    for index in range(target.num_fields):
        field = target.field(index)
        child = children.get(field.name.lower())
        path = f"{column}.{field.name}"
        arrays.append(pa.nulls(len(array), field.type) if child is None else _cast(child, field.type, path))
    return pa.StructArray.from_arrays(arrays, fields=list(target), mask=array.is_null())


def _require_wider(source: pa.DataType, target: pa.DataType, column: str) -> None:
    try:
        fits = wider_type(target, storage_type(source, column), column).equals(target)
    except TypeRefused:
        fits = False
    if not fits:
        raise LocalProtocolError(f"column {column!r}: {source} cannot be conformed to {target} (no rule widens "
                                 "it so): the schema plan was skipped", op="conforming values", subject=column)


def convert_column(column: pa.ChunkedArray | pa.Array, target: pa.DataType, name: str) -> pa.ChunkedArray:
    """One column, checked (UTF-8, ranges) and converted to ``target``."""
    _require_wider(column.type, target, name)
    check_utf8(column, name)
    for chunk in _chunks(column):
        check_ranges(chunk, name)
    return _map_chunks(column, target, lambda chunk: _cast(chunk, target, name))


def widen_column(column: pa.ChunkedArray | pa.Array, target: pa.DataType, name: str) -> pa.ChunkedArray:
    """One column whose values were checked already (by ``to_storage``, or stored in a table), widened to
    ``target`` (casts stay overflow-checked). Lists and structs are rebuilt child by child: pyarrow's own
    cast of ``list<null>`` to a list type with another field name drops the child's length (pyarrow 26)."""
    _require_wider(column.type, target, name)
    return _map_chunks(column, target, lambda chunk: _cast(chunk, target, name))


def to_storage(table: pa.Table) -> pa.Table:
    """``table`` with every column in its storage type (names as written). Raises RemoteProtocolError for
    a type Harbour does not store, ValueRefused for a value it cannot hold."""
    try:
        fields = [pa.field(field.name, storage_type(field.type, field.name)) for field in table.schema]
    except TypeRefused as refused:
        raise refused.problem.error() from None
    target = pa.schema(fields)
    if table.schema.equals(target):
        for field in table.schema:
            check_utf8(table.column(field.name), field.name)
            for chunk in _chunks(table.column(field.name)):
                check_ranges(chunk, field.name)
        return table
    columns = [convert_column(table.column(i), field.type, field.name) for i, field in enumerate(fields)]
    return pa.Table.from_arrays(columns, schema=target)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns (matched ignoring case; the schema's spelling wins), in
    its order and types; missing columns are null. ``schema`` comes from ``table_types.plan``, so it is at
    least as wide as every column of ``table``; a written column it lacks must be all null.

    ``table`` comes from ``to_storage``, which checked every value (UTF-8, ranges): conforming only reshapes and
    widens, so a row's values are checked once on each side (the edge's ingest, the hub's merge)."""
    by_lower = {name.lower(): index for index, name in enumerate(table.column_names)}
    columns = []
    for field in schema:
        index = by_lower.pop(field.name.lower(), None)
        if index is None:
            columns.append(pa.nulls(table.num_rows, field.type))
        elif table.schema.field(index).type.equals(field.type):
            columns.append(table.column(index))
        else:
            columns.append(widen_column(table.column(index), field.type, field.name))
    for name_lower, index in by_lower.items():
        if table.column(index).null_count != table.num_rows:
            raise LocalProtocolError(f"column {table.column_names[index]!r} is not in the table's schema",
                                     op="conforming values", subject=name_lower)
    return pa.Table.from_arrays(columns, schema=schema)
