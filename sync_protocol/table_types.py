"""The one type system of Harbour's tables: what a column may hold, and how a column's type widens.

Theory of operation
-------------------
The edge checks every write against these rules before it acknowledges it; the hub fits every segment
to them before it merges it. Both call the same functions, so **a write the edge acknowledged is never
quarantined at the hub for its types** (CONTRACT.md, "Types"). Pure: types in, types or problems out.

1. **Storage types.** Each Arrow type a write brings maps to the one type the merged table stores for it
   (``storage_type``); the edge conforms every write to it before the write reaches its log, so the
   edge's segments carry exactly the types of the hub's table:

   ============================================================  ======================================
   written                                                       stored
   ============================================================  ======================================
   null                                                          null (widens to the first real type)
   bool                                                          bool
   int8 ... int64, uint8 ... uint64                              int64 (a uint64 above 2^63-1 is refused)
   float16, float32, float64                                     float64
   decimal128 / decimal256 of precision <= 38                    decimal128(precision, scale)
   string, large_string, string_view, dictionary of those        string (must be valid UTF-8)
   binary, large_binary, binary_view, fixed_size_binary          binary
   date32, date64                                                date32 (a date64 keeps its day)
   timestamp of any unit, with any time zone or none             timestamp[us, tz=UTC]
   list, large_list, fixed_size_list, list_view                  list of the item's storage type
   struct                                                        struct of the fields' storage types
   ============================================================  ======================================

   A zone-less timestamp is **taken as UTC** (its wall-clock value is kept and labelled UTC); one with
   another zone is the same instant in UTC; nanoseconds are truncated to whole microseconds, Delta's
   unit. A struct without fields (JSON ``{}`` in every row) is stored as null: Parquet cannot hold one.
   Refused: time32/time64 (Delta has no time-of-day type), durations, intervals, maps, unions, decimals
   of more than 38 digits, nesting deeper than ``MAX_NESTING_DEPTH``, struct fields whose names repeat
   ignoring case (Delta refuses them) or are empty.
2. **Widening** (``wider_type``): null -> any type; int64 -> float64 (integers beyond 2^53 round to the
   nearest float64, as SQL's ``CAST(BIGINT AS DOUBLE)``); date -> timestamp (midnight UTC); decimal ->
   a decimal with enough integer and fraction digits for both; list -> list of the wider item; struct
   -> struct with the union of the fields. Anything else is a change of kind: refused at the edge,
   quarantined at the hub.
3. **Names** (``COLUMN_NAME``): top-level names are SQL identifiers; ``_`` starts Harbour's lineage
   columns only. A name that differs from an existing column only in case **folds into that column**
   (Delta, DuckDB and Spark treat names case-insensitively): the table keeps its first spelling.

Value checks (ranges, UTF-8) live in ``table_values``; what text in CSV and JSON Lines means, in
``text_types``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.types as pat

from .errors import ErrorCode, RemoteProtocolError

MAX_NESTING_DEPTH = 32
"""Levels of struct/list nesting a column may have. delta-rs cannot read back a table whose schema is
nested 44 structs deep (serde_json's recursion limit on the schema string), and DuckDB fails on 60
nested lists; 32 stays well inside both and far above any real record."""

MAX_DECIMAL_PRECISION = 38
"""Delta Lake's largest decimal (decimal128). A decimal256 of up to 38 digits is stored as decimal128."""

MAX_FIELD_NAME_CHARS = 255
"""Longest nested field name. A field name is typically a JSON key; a longer one is data mistaken for a
name, and every one is repeated in each segment's and each Delta commit's schema."""

COLUMN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,127}")
"""Top-level column names need no quoting in DuckDB, SQLite, PostgreSQL or Spark."""

LINEAGE_PREFIX = "_"
"""Names starting with ``_`` are the hub's lineage columns (``_site``, ``_seq``, ``_ingested_at``)."""

TIMESTAMP = pa.timestamp("us", tz="UTC")
"""Every timestamp is stored as this: Delta Lake's ``timestamp`` is UTC microseconds."""

DATE = pa.date32()

WIDENINGS = ("null -> any type, int64 -> float64, date -> timestamp, decimal -> a decimal with more digits, "
             "list -> list of a wider item, struct -> struct with more fields")
"""The rule quoted in every conflict message."""

TIMESTAMP_RULE = ("Harbour stores every timestamp as timestamp[us, tz=UTC]: a zone-less timestamp is taken "
                  "as UTC, one in another zone is converted to UTC")


@dataclass(frozen=True)
class TypeProblem:
    """Why a column cannot be stored as written: on what (``column``), what is wrong, what to do."""

    column: str
    message: str
    hint: str

    def error(self) -> RemoteProtocolError:
        return RemoteProtocolError(self.message, code=ErrorCode.BAD_REQUEST, op="checking types",
                                   subject=repr(self.column), hint=self.hint)


class TypeRefused(Exception):
    """Raised by ``storage_type`` and ``wider_type``; carries the problem."""

    def __init__(self, problem: TypeProblem) -> None:
        super().__init__(problem.message)
        self.problem = problem


class KindConflict(TypeRefused):
    """``wider_type``'s refusal for a change of kind (``plan`` words it for the table at hand)."""


def _refuse(column: str, message: str, hint: str) -> TypeRefused:
    return TypeRefused(TypeProblem(column, message, hint))


# -- storage types -------------------------------------------------------------------------------------

_STRINGS = ("is_string", "is_large_string", "is_string_view")
_BINARIES = ("is_binary", "is_large_binary", "is_binary_view", "is_fixed_size_binary")
_LISTS = ("is_list", "is_large_list", "is_fixed_size_list", "is_list_view", "is_large_list_view")


def _is_any(dtype: pa.DataType, checks: tuple[str, ...]) -> bool:
    return any(getattr(pat, check, lambda _: False)(dtype) for check in checks)


def is_list_like(dtype: pa.DataType) -> bool:
    return _is_any(dtype, _LISTS)


def nesting_depth(dtype: pa.DataType, limit: int = MAX_NESTING_DEPTH + 1) -> int:
    """Levels of struct/list nesting of ``dtype`` (0 for a plain value), counted up to ``limit``."""
    if limit <= 0:
        return 0
    if pat.is_dictionary(dtype):
        return nesting_depth(dtype.value_type, limit)
    if pat.is_map(dtype):
        return 1 + max(nesting_depth(dtype.key_type, limit - 1), nesting_depth(dtype.item_type, limit - 1))
    if is_list_like(dtype):
        return 1 + nesting_depth(dtype.value_type, limit - 1)
    if pat.is_struct(dtype) or pat.is_union(dtype):
        return 1 + max((nesting_depth(dtype.field(i).type, limit - 1) for i in range(dtype.num_fields)), default=0)
    return 0


def storage_type(dtype: pa.DataType, column: str) -> pa.DataType:
    """The type the table stores for a column written as ``dtype``; TypeRefused names the rule."""
    depth = nesting_depth(dtype)
    if depth > MAX_NESTING_DEPTH:
        raise _refuse(column, f"column {column!r} is nested more than {MAX_NESTING_DEPTH} levels deep "
                      f"(structs and lists); Harbour stores at most {MAX_NESTING_DEPTH}, because Delta Lake "
                      "cannot read back a schema nested much deeper",
                      "flatten the record, or send the deep part as a JSON string column")
    return _storage(dtype, column)


def _storage(t: pa.DataType, column: str) -> pa.DataType:
    if pat.is_dictionary(t):
        return _storage(t.value_type, column)
    if pat.is_null(t) or pat.is_boolean(t):
        return t
    if pat.is_integer(t):
        return pa.int64()
    if pat.is_floating(t):
        return pa.float64()
    if pat.is_decimal(t):
        if t.precision > MAX_DECIMAL_PRECISION:
            raise _refuse(column, f"column {column!r} is {t}; Delta Lake stores decimals of at most "
                          f"{MAX_DECIMAL_PRECISION} digits", "send it with fewer digits, as float64 or as a string")
        return pa.decimal128(t.precision, t.scale)
    if _is_any(t, _STRINGS):
        return pa.string()
    if _is_any(t, _BINARIES):
        return pa.binary()
    if pat.is_date(t):
        return DATE
    if pat.is_timestamp(t):
        return TIMESTAMP
    if is_list_like(t):
        return pa.list_(_storage(t.value_type, f"{column}[]"))
    if pat.is_struct(t):
        return _storage_struct(t, column)
    raise _refuse(column, f"column {column!r} has type {t}, which Harbour does not store: {_why_not(t)}",
                  "send it as string, integer, float, decimal, boolean, date, timestamp, binary, list or struct")


def _why_not(t: pa.DataType) -> str:
    if pat.is_time(t):
        return "Delta Lake has no time-of-day type (send a string such as '10:00:00', or microseconds as int64)"
    if pat.is_map(t):
        return "send a map as a list of {key, value} structs, or as a struct"
    if pat.is_duration(t) or pat.is_interval(t):
        return "Delta Lake has no duration type (send it as an integer with the unit in the column name)"
    return "Delta Lake has no such type"


def _storage_struct(t: pa.StructType, column: str) -> pa.DataType:
    fields, seen = [], {}
    for index in range(t.num_fields):
        field = t.field(index)
        path = f"{column}.{field.name}"
        if not field.name or len(field.name) > MAX_FIELD_NAME_CHARS:
            raise _refuse(column, f"column {column!r} has a struct field whose name is empty or longer than "
                          f"{MAX_FIELD_NAME_CHARS} characters", "give every field a name of 1-255 characters")
        if field.name.lower() in seen:
            raise _refuse(path, f"struct field {path!r} appears twice in column {column!r} (as "
                          f"{seen[field.name.lower()]!r} and {field.name!r}; field names are case-insensitive "
                          "in Delta Lake)", "send each field once")
        seen[field.name.lower()] = field.name
        fields.append(pa.field(field.name, _storage(field.type, path)))
    return pa.struct(fields) if fields else pa.null()


# -- widening -------------------------------------------------------------------------------------------

def _kind(t: pa.DataType) -> str:
    for name, check in (("null", pat.is_null), ("bool", pat.is_boolean), ("integer", pat.is_integer),
                        ("float", pat.is_floating), ("decimal", pat.is_decimal), ("text", pat.is_string),
                        ("binary", pat.is_binary), ("date", pat.is_date), ("timestamp", pat.is_timestamp),
                        ("list", pat.is_list), ("struct", pat.is_struct)):
        if check(t):
            return name
    return str(t)


def wider_type(current: pa.DataType, written: pa.DataType, column: str) -> pa.DataType:
    """The type that holds every value of both storage types; TypeRefused when they are different kinds.
    Commutative up to struct field order and spelling (the current type's come first)."""
    if current.equals(written):
        return current
    kinds = {_kind(current), _kind(written)}
    if pat.is_null(current):
        return written
    if pat.is_null(written):
        return current
    if kinds == {"integer", "float"}:
        return pa.float64()
    if kinds == {"date", "timestamp"}:
        return TIMESTAMP
    if kinds == {"decimal"}:
        return _wider_decimal(current, written, column)
    if kinds == {"list"}:
        return pa.list_(wider_type(current.value_type, written.value_type, f"{column}[]"))
    if kinds == {"struct"}:
        return _wider_struct(current, written, column)
    raise KindConflict(conflict(column, current, written, written))


def _wider_decimal(current: pa.Decimal128Type, written: pa.Decimal128Type, column: str) -> pa.DataType:
    scale = max(current.scale, written.scale)
    precision = max(current.precision - current.scale, written.precision - written.scale) + scale
    if precision > MAX_DECIMAL_PRECISION:
        raise _refuse(column, f"column {column!r} is {current} but this write has it as {written}: a decimal "
                      f"holding both would need {precision} digits, more than Delta Lake's "
                      f"{MAX_DECIMAL_PRECISION}", f"send {column!r} as {current}")
    return pa.decimal128(precision, scale)


def _wider_struct(current: pa.StructType, written: pa.StructType, column: str) -> pa.DataType:
    by_lower = {written.field(i).name.lower(): written.field(i) for i in range(written.num_fields)}
    fields, matched = [], set()
    for index in range(current.num_fields):
        field = current.field(index)
        other = by_lower.get(field.name.lower())
        if other is None:
            fields.append(field)
            continue
        matched.add(field.name.lower())
        fields.append(pa.field(field.name, wider_type(field.type, other.type, f"{column}.{field.name}")))
    fields += [field for lower, field in by_lower.items() if lower not in matched]
    return pa.struct(fields)


def conflict(column: str, current: pa.DataType, written: pa.DataType, stored: pa.DataType, *,
             table: str = "", subject: str = "this write") -> TypeProblem:
    """The problem of a change of kind: names the column, both types and the rule that applies."""
    of_table = f" of table {table!r}" if table else ""
    as_stored = f" (stored as {stored})" if not stored.equals(written) else ""
    kinds = {_kind(current), _kind(stored)}
    if "timestamp" in kinds and "text" in kinds:
        rule = ("text becomes a timestamp only in CSV and JSON Lines bodies, when every value of the write is "
                f"ISO 8601 such as 2026-12-01T10:00:00.5Z; {TIMESTAMP_RULE}")
    elif "date" in kinds and "text" in kinds:
        rule = "text becomes a date only in CSV and JSON Lines bodies, when every value is ISO 8601 (2026-12-01)"
    elif "timestamp" in kinds:
        rule = f"{TIMESTAMP_RULE}; only a date widens to a timestamp"
    else:
        rule = f"{_kind(current)} and {_kind(stored)} are different kinds; the widenings are {WIDENINGS}"
    return TypeProblem(column, f"column {column!r}{of_table} is {current}, but {subject} has it as {written}"
                       f"{as_stored}: {rule}",
                       f"send {column!r} as {current} (or a type that widens to it), or write the new kind of "
                       "data to a new column or table")


# -- whole schemas -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SchemaPlan:
    """The outcome of fitting a write's (or segment's) columns to a table's storage schema."""

    schema: pa.Schema | None  # the table's schema after this write; None when there are problems
    problems: tuple[TypeProblem, ...] = ()
    new_columns: tuple[str, ...] = ()
    widened: tuple[str, ...] = ()  # existing columns whose type changed

    @property
    def conflicts(self) -> tuple[str, ...]:
        return tuple(problem.message for problem in self.problems)

    def raise_first(self) -> None:
        if self.problems:
            raise self.problems[0].error()


def column_problems(schema: pa.Schema, *, subject: str = "this write") -> list[TypeProblem]:
    """Names and types of a write's own columns, before any table is looked at."""
    problems: list[TypeProblem] = []
    seen: dict[str, str] = {}
    for field in schema:
        name = field.name
        if name.startswith(LINEAGE_PREFIX):
            problems.append(TypeProblem(name[:80], f"column name {name[:80]!r} is not valid: names starting with '_' "
                                        "are kept for Harbour's lineage columns (_site, _seq, _ingested_at)",
                                        "rename the column"))
        elif not COLUMN_NAME.fullmatch(name):
            problems.append(TypeProblem(name[:80], f"column name {name[:80]!r} is not valid: use 1-128 of A-Z, "
                                        "a-z, 0-9 and '_', starting with a letter (names starting with '_' are "
                                        "kept for Harbour's lineage columns)",
                                        "rename the column in the sending application"))
        elif name.lower() in seen:
            problems.append(TypeProblem(name, f"column {name!r} appears twice in {subject} (as "
                                        f"{seen[name.lower()]!r} and {name!r}; column names are case-insensitive)",
                                        "send each column once"))
        else:
            seen[name.lower()] = name
    return problems


def plan(table: str, current: pa.Schema | None, written: pa.Schema, *, subject: str = "this write") -> SchemaPlan:
    """Fit ``written`` (any Arrow types) to ``current`` (storage types, or None for a new table)."""
    problems = column_problems(written, subject=subject)
    if problems:
        return SchemaPlan(None, tuple(problems))
    fields = {field.name: field for field in current} if current is not None else {}
    by_lower = {name.lower(): name for name in fields}
    new: list[str] = []
    widened: list[str] = []
    for field in written:
        try:
            stored = storage_type(field.type, field.name)
            existing = by_lower.get(field.name.lower())
            if existing is None:
                fields[field.name] = pa.field(field.name, stored)
                by_lower[field.name.lower()] = field.name
                new.append(field.name)
                continue
            before = fields[existing].type
            try:
                wider = wider_type(before, stored, existing)
            except KindConflict as refused:
                if refused.problem.column != existing:
                    raise
                raise TypeRefused(conflict(existing, before, field.type, stored, table=table,
                                           subject=subject)) from None
            if not wider.equals(before):
                fields[existing] = pa.field(existing, wider)
                widened.append(existing)
        except TypeRefused as refused:
            problems.append(refused.problem)
    if problems:
        return SchemaPlan(None, tuple(problems))
    return SchemaPlan(pa.schema(list(fields.values())), (), tuple(new), tuple(widened))


def storage_schema(schema: pa.Schema) -> tuple[pa.Schema, tuple[str, ...]]:
    """``schema`` in storage types, for a table's schema as stored before these rules (or read back from
    Delta); columns Harbour cannot store are left out and named in the second value."""
    fields, dropped = [], []
    for field in schema:
        try:
            fields.append(pa.field(field.name, storage_type(field.type, field.name)))
        except TypeRefused:
            dropped.append(field.name)
    return pa.schema(fields), tuple(dropped)
