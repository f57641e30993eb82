"""What text means in the two formats that carry no types: CSV and JSON Lines.

Arrow IPC and Parquet bodies declare their types; CSV and JSON Lines do not, and pyarrow's two readers
guess differently: JSON's ``"2026-12-01T10:00:00Z"`` became a zone-less ``timestamp[s]`` and CSV's the
same text a UTC one (segments of two ships then conflicted at the hub), JSON kept a string when the
seconds had a fraction, JSON made ``"2026-12-01"`` a timestamp and CSV a date, and CSV made
``10:00:00`` a ``time32`` Delta cannot store. So both codecs read every date-like value as text and
hand it here, and one rule decides for both formats:

* a column (or nested field) whose non-null values of the write are all ISO 8601 dates
  (``2026-12-01``) is a **date**;
* one whose values are all ISO 8601 dates or date-times (``2026-12-01T10:00:00``, a space for the
  ``T``, minutes or seconds or a fraction optional) is a **timestamp**, stored as UTC microseconds:
  zone-less text is **taken as UTC**, an offset (``Z``, ``+02:00``, ``+0200``, ``+02``) converts to UTC, a
  fraction beyond microseconds is truncated, a date alone is midnight UTC;
* anything else stays a string (a time of day such as ``10:00:00`` too: Delta has no such type).

An empty string in a column that becomes a date or timestamp is null (an empty CSV field is null in every
typed column; in a text column it stays the empty string, as pyarrow reads CSV).

Numbers, booleans and nulls are as pyarrow reads them in both formats: an integer is int64, any other
number float64 (a column first written as ``1`` takes ``2.5`` later: int64 widens to float64, see
``table_types``), ``true``/``false`` bool, an empty CSV field or JSON ``null`` null.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pat

from .table_types import DATE, TIMESTAMP

DATE_TEXT = r"^\d{4}-\d{2}-\d{2}$"
TIMESTAMP_TEXT = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?$"
ZONE_TEXT = r"(Z|[+-]\d{2}(:?\d{2})?)$"
BEYOND_MICROSECONDS = r"(\.\d{6})\d+"


def _temporal(dtype: pa.DataType) -> bool:
    return pat.is_date(dtype) or pat.is_time(dtype) or pat.is_timestamp(dtype)


def as_text_type(dtype: pa.DataType) -> pa.DataType:
    """``dtype`` with every date, time and timestamp inside it read as a string instead."""
    if _temporal(dtype):
        return pa.string()
    if pat.is_struct(dtype):
        return pa.struct([pa.field(f.name, as_text_type(f.type)) for f in dtype])
    if pat.is_list(dtype):
        return pa.list_(as_text_type(dtype.value_type))
    return dtype


def guessed_temporal(schema: pa.Schema) -> bool:
    """Whether a reader guessed a date, time or timestamp anywhere in ``schema`` (then read it again as text)."""
    return any(not as_text_type(field.type).equals(field.type) for field in schema)


def _all_match(text: pa.Array, pattern: str) -> bool:
    return bool(pc.all(pc.match_substring_regex(text, pattern)).as_py())


def infer_text(text: pa.Array) -> pa.Array:
    """A string array as a date or timestamp array when every value is one (see the module's rule); an
    empty string there is null, as an empty CSV field of a date column always was."""
    if len(text) == text.null_count:
        return text
    original = text
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    if len(text) == text.null_count:
        return original
    try:
        if _all_match(text, DATE_TEXT):
            return text.cast(DATE)
        if not _all_match(pc.if_else(pc.match_substring_regex(text, DATE_TEXT), "2000-01-01T00:00", text),
                          TIMESTAMP_TEXT):
            return original
        dated = pc.if_else(pc.match_substring_regex(text, DATE_TEXT), pc.binary_join_element_wise(text, "T00:00", ""),
                           text)
        cut = pc.replace_substring_regex(dated, BEYOND_MICROSECONDS, r"\1")
        zoned = pc.if_else(pc.match_substring_regex(cut, ZONE_TEXT), cut, pc.binary_join_element_wise(cut, "Z", ""))
        return zoned.cast(TIMESTAMP)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return original  # e.g. 2026-02-30: looks like a date, is none; the column stays text


def _infer(array: pa.Array) -> pa.Array:
    t = array.type
    if pat.is_string(t):
        return infer_text(array)
    if pat.is_struct(t):
        children = [_infer(child) for child in array.flatten()]
        fields = [pa.field(t.field(i).name, child.type) for i, child in enumerate(children)]
        return pa.StructArray.from_arrays(children, fields=fields, mask=array.is_null())
    if pat.is_list(t):
        values = _infer(array.flatten())
        lengths = pc.fill_null(pc.list_value_length(array), 0)
        offsets = pa.concat_arrays([pa.array([0], pa.int32()), pc.cumulative_sum_checked(lengths)])
        return pa.ListArray.from_arrays(offsets, values, mask=array.is_null())
    return array


def infer_columns(table: pa.Table) -> pa.Table:
    """Every string column and nested string field of a CSV or JSON Lines write, typed by the rule."""
    columns = []
    for column in table.columns:
        combined = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
        columns.append(_infer(combined) if _holds_text(combined.type) else combined)
    return pa.Table.from_arrays(columns, names=table.column_names)


def _holds_text(dtype: pa.DataType) -> bool:
    if pat.is_string(dtype):
        return True
    if pat.is_struct(dtype):
        return any(_holds_text(f.type) for f in dtype)
    if pat.is_list(dtype):
        return _holds_text(dtype.value_type)
    return False
