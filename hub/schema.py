"""The canonical schema of a merged table, and whether a segment fits it.

Delta cannot widen a column's type after the fact (an int32 column stays int32 and silently narrows
int64 values written into it), so the hub never lets a narrow type in: every integer is stored as
int64 and every float as float64, strings as ``string``, timestamps in microseconds (UTC when the
segment's timestamps carry a zone). With that, the only schema changes left are:

* a new column -> merged in; rows of sites without it read as NULL;
* a column missing from a segment -> NULL in that segment's rows;
* the same column with another canonical type (string vs int, int vs float) -> a conflict: the segment
  is quarantined, never cast and never dropped silently.

Column names starting with ``_`` are the hub's lineage columns (``_site``, ``_seq``, ``_ingested_at``);
a segment that brings its own is a conflict too, so a ship cannot claim rows for another site.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

LINEAGE_PREFIX = "_"
LINEAGE_FIELDS = (
    pa.field("_site", pa.string()),
    pa.field("_seq", pa.int64()),
    pa.field("_ingested_at", pa.timestamp("us", tz="UTC")),
)


class UnsupportedType(Exception):
    pass


def canonical_type(data_type: pa.DataType) -> pa.DataType:
    """The type the hub stores for ``data_type``; UnsupportedType if Delta cannot hold it."""
    t = data_type
    if pa.types.is_dictionary(t):
        return canonical_type(t.value_type)
    if pa.types.is_integer(t):
        return pa.int64()
    if pa.types.is_floating(t):
        return pa.float64()
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", tz="UTC" if t.tz is not None else None)
    if pa.types.is_date(t):
        return pa.date32()
    if pa.types.is_boolean(t) or pa.types.is_decimal128(t) or pa.types.is_null(t):
        return t
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(canonical_type(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, canonical_type(f.type)) for f in t])
    raise UnsupportedType(f"type {t} cannot be stored in a Delta table")


@dataclass(frozen=True)
class SchemaPlan:
    """The outcome of fitting one segment's schema to a table's canonical schema."""

    schema: pa.Schema | None  # the canonical schema after this segment (None when it conflicts)
    conflicts: tuple[str, ...]
    new_columns: tuple[str, ...] = ()


def plan(canonical: pa.Schema | None, incoming: pa.Schema) -> SchemaPlan:
    """Fit ``incoming`` (a segment's data columns) to ``canonical`` (data columns of the table)."""
    conflicts: list[str] = []
    fields = {f.name: f for f in canonical} if canonical is not None else {}
    order = list(fields)
    new: list[str] = []
    seen: set[str] = set()
    for field in incoming:
        if field.name in seen:
            conflicts.append(f"column {field.name!r} appears twice")
            continue
        seen.add(field.name)
        if field.name.startswith(LINEAGE_PREFIX):
            conflicts.append(f"column {field.name!r} uses the reserved prefix '_' of the hub's lineage columns")
            continue
        try:
            target = canonical_type(field.type)
        except UnsupportedType as error:
            conflicts.append(f"column {field.name!r}: {error}")
            continue
        existing = fields.get(field.name)
        if existing is None:
            if pa.types.is_null(target):
                continue  # an all-null column of unknown type adds nothing; it reads as NULL anyway
            fields[field.name] = pa.field(field.name, target)
            order.append(field.name)
            new.append(field.name)
        elif not pa.types.is_null(target) and existing.type != target:
            conflicts.append(
                f"column {field.name!r} is {field.type} (stored as {target}) here but {existing.type} in the table"
            )
    if conflicts:
        return SchemaPlan(None, tuple(conflicts))
    return SchemaPlan(pa.schema([fields[name] for name in order]), (), tuple(new))


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` cast to ``schema``: canonical types, missing columns as NULL, columns in schema order.
    Raises pyarrow.ArrowInvalid when a value does not fit (e.g. a uint64 above int64's range)."""
    columns = []
    for field in schema:
        if field.name in table.column_names:
            column = table.column(field.name)
            if pa.types.is_dictionary(column.type):
                column = column.cast(column.type.value_type)
            columns.append(column.cast(field.type, safe=not pa.types.is_timestamp(field.type)))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def strip_edge_site(table: pa.Table, site: str) -> tuple[pa.Table, str | None]:
    """Edges write the lineage column ``_site`` into their segments (so a ship's own files say where they
    come from). The hub trusts only the authenticated upload: a ``_site`` naming any other site is a
    conflict (G5); a matching one is dropped here, and the merger adds its own."""
    if "_site" not in table.column_names:
        return table, None
    column = table.column("_site")
    if column.null_count or not pc.all(pc.equal(column.cast(pa.string()), site)).as_py() and table.num_rows:
        return table, f"column '_site' names another site than the uploader {site!r}"
    return table.drop_columns(["_site"]), None


def data_columns(schema: pa.Schema) -> pa.Schema:
    """A merged table's schema without its lineage columns."""
    return pa.schema([f for f in schema if not f.name.startswith(LINEAGE_PREFIX)])
