"""The schema of a merged table, and whether a segment fits it: the shared type rules, at the hub.

What a column may hold and how it widens is decided once, in ``sync_protocol.table_types`` (types) and
``sync_protocol.table_values`` (values); the edge applied the same rules before it acknowledged the rows,
so a segment an unmodified edge sealed always fits. What is left here is the hub's own part:

* **Lineage columns** (``_site``, ``_seq``, ``_ingested_at``): a segment may carry only ``_site``, the
  edge's own, which must be text naming the uploader (then it is kept as the merged rows' ``_site``); any
  other ``_`` column is a conflict, so a ship cannot claim rows for another site.
* **In place or rewritten.** Delta's schema merge adds columns and struct fields and gives a null column
  its first type in place; it cannot change a column's type (delta-rs would cast 2.5 into an int64
  column as 2, silently). So a widening of an existing column (int64 -> float64, date -> timestamp, a
  decimal with more digits, and a zone-less timestamp column written before these rules -> UTC) is
  applied by rewriting the table once, streamed (``Merger._widen``). Each column widens a few times
  at most in its life (float64, timestamp and 38 digits are the tops).
* A new column that is null in every row of its segment adds nothing and is not added (it reads as
  NULL anyway); it is added with its type once a segment brings values.

A segment that does not fit (a change of kind, a type or value the rules refuse) is quarantined, never
cast and never dropped silently.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pat

from sync_protocol import table_types, table_values
from sync_protocol.table_types import LINEAGE_PREFIX, SchemaPlan, TypeRefused

SITE_COLUMN = "_site"
LINEAGE_FIELDS = (
    pa.field(SITE_COLUMN, pa.string()),
    pa.field("_seq", pa.int64()),
    pa.field("_ingested_at", table_types.TIMESTAMP),
)
SEGMENT = "this segment"

__all__ = ["LINEAGE_FIELDS", "LINEAGE_PREFIX", "SchemaPlan", "canonical", "conform", "data_columns", "in_place",
           "plan", "split_site", "to_storage"]


def data_columns(schema: pa.Schema) -> pa.Schema:
    """A merged table's schema without its lineage columns."""
    return pa.schema([f for f in schema if not f.name.startswith(LINEAGE_PREFIX)])


def canonical(stored: pa.Schema | None) -> pa.Schema | None:
    """The data columns of a Delta table's schema, in storage types (what segments are planned against)."""
    if stored is None:
        return None
    return table_types.storage_schema(data_columns(stored))[0]


def plan(table: str, current: pa.Schema | None, incoming: pa.Schema) -> SchemaPlan:
    """Fit ``incoming`` (a segment's data columns) to ``current`` (storage types, None for a new table)."""
    fitted = table_types.plan(table, current, incoming, subject=SEGMENT)
    if fitted.schema is None:
        return fitted
    empty = {name for name in fitted.new_columns if pat.is_null(fitted.schema.field(name).type)}
    if not empty:
        return fitted
    kept = pa.schema([field for field in fitted.schema if field.name not in empty])
    return SchemaPlan(kept, (), tuple(n for n in fitted.new_columns if n not in empty), fitted.widened)


def to_storage(table: pa.Table) -> pa.Table:
    """A segment's columns in storage types, values checked (RemoteProtocolError names the column)."""
    return table_values.to_storage(table)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` (in storage types) with exactly ``schema``'s columns: widened, folded, NULL where missing."""
    return table_values.conform(table, schema)


def in_place(stored: pa.DataType, planned: pa.DataType) -> bool:
    """Whether Delta's schema merge turns the ``stored`` column type into ``planned`` without a rewrite:
    the same type, null -> any, or a struct gaining fields (at any depth)."""
    if pat.is_timestamp(stored) and stored.tz is None:
        return False  # written before the rules: stored zone-less, becomes UTC
    if pat.is_null(stored):
        return True
    if pat.is_struct(stored) and pat.is_struct(planned):
        names = {planned.field(i).name: planned.field(i).type for i in range(planned.num_fields)}
        return all(stored.field(i).name in names and in_place(stored.field(i).type, names[stored.field(i).name])
                   for i in range(stored.num_fields))
    if table_types.is_list_like(stored) and pat.is_list(planned):
        return in_place(stored.value_type, planned.value_type)
    try:
        return table_types.storage_type(stored, "column").equals(planned)
    except TypeRefused:
        return False


def split_site(table: pa.Table, site: str) -> tuple[pa.Table, pa.ChunkedArray | None, str | None]:
    """A segment's data columns and its lineage column ``_site``, or why it cannot be merged.

    Edges write ``_site`` into their segments (a ship's own files say where they come from). The hub trusts
    only the authenticated upload: a ``_site`` that is not text, or names any other site, is a conflict (G5).
    A matching one is kept as the merged rows' ``_site``: the column is made once, at the edge, and checked
    once, here. Only a segment without one (sent by another tus client) gets its ``_site`` from the hub."""
    if SITE_COLUMN not in table.column_names:
        return table, pa.chunked_array([pa.array([site] * table.num_rows, pa.string())]), None
    if table.column_names.count(SITE_COLUMN) > 1:
        return table, None, "column '_site' appears more than once"
    column = table.column(SITE_COLUMN)
    value_type = column.type.value_type if pat.is_dictionary(column.type) else column.type
    if not (pat.is_string(value_type) or pat.is_large_string(value_type) or pat.is_string_view(value_type)):
        return table, None, f"column '_site' is {column.type}; it must be a string naming the uploader {site!r}"
    try:
        column.validate(full=True)
    except pa.ArrowInvalid as error:
        return table, None, f"column '_site' is not valid UTF-8 text: {str(error)[:200]}"
    as_text = column.cast(pa.string())
    if table.num_rows and (as_text.null_count or not pc.all(pc.equal(as_text, site)).as_py()):
        return table, None, f"column '_site' names another site than the uploader {site!r}"
    return table.drop_columns([SITE_COLUMN]), as_text, None
