"""The hub's part of the type rules: lineage columns, the edge's _site, and which widenings Delta makes in place."""

from __future__ import annotations

import pyarrow as pa
import pytest

from hub import schema
from sync_protocol import RemoteProtocolError


def test_widened_and_added_columns_merge():
    v1 = pa.schema([("row_id", pa.int32()), ("value", pa.float32())])
    first = schema.plan("t", None, v1)
    assert first.schema == pa.schema([("row_id", pa.int64()), ("value", pa.float64())])
    v2 = pa.schema([("row_id", pa.int64()), ("value", pa.float64()), ("firmware", pa.string())])
    second = schema.plan("t", first.schema, v2)
    assert second.conflicts == () and second.new_columns == ("firmware",)
    older = schema.plan("t", second.schema, pa.schema([("row_id", pa.int16()), ("empty", pa.null())]))
    assert older.schema == second.schema  # missing columns read NULL, an all-null one adds nothing
    widened = schema.plan("t", second.schema, pa.schema([("ROW_ID", pa.float64())]))
    assert widened.widened == ("row_id",) and widened.schema.field("row_id").type == pa.float64()


@pytest.mark.parametrize(("incoming", "fragment"), [
    (pa.schema([("row_id", pa.string())]), "'row_id' of table 't' is int64, but this segment has it as string"),
    (pa.schema([("_site", pa.string())]), "kept for Harbour's lineage columns"),
    (pa.schema([("_seq", pa.int64())]), "kept for Harbour's lineage columns"),
    (pa.schema([("t", pa.time64("us"))]), "no time-of-day type"),
    (pa.schema([("a b", pa.int64())]), "not valid"),
    (pa.schema([("x", pa.int64()), ("X", pa.int64())]), "appears twice in this segment"),
])
def test_conflicts(incoming, fragment):
    plan = schema.plan("t", pa.schema([("row_id", pa.int64())]), incoming)
    assert plan.schema is None and fragment in "; ".join(plan.conflicts)


def test_legacy_zone_less_timestamps_are_planned_as_utc_and_rewritten():
    stored = pa.schema([("ts", pa.timestamp("us")), ("_site", pa.string())])
    assert schema.canonical(stored) == pa.schema([("ts", pa.timestamp("us", tz="UTC"))])
    assert not schema.in_place(pa.timestamp("us"), pa.timestamp("us", tz="UTC"))


@pytest.mark.parametrize(("stored", "planned", "in_place"), [
    (pa.int64(), pa.int64(), True),
    (pa.null(), pa.string(), True),
    (pa.struct([("a", pa.int64())]), pa.struct([("a", pa.int64()), ("b", pa.string())]), True),
    (pa.list_(pa.field("element", pa.null())), pa.list_(pa.int64()), True),
    (pa.large_string(), pa.string(), True),
    (pa.int64(), pa.float64(), False),
    (pa.date32(), pa.timestamp("us", tz="UTC"), False),
    (pa.decimal128(10, 2), pa.decimal128(12, 4), False),
    (pa.struct([("a", pa.int64())]), pa.struct([("a", pa.float64())]), False),
])
def test_which_widenings_delta_makes_in_place(stored, planned, in_place):
    assert schema.in_place(stored, planned) is in_place


def test_to_storage_refuses_what_the_rules_refuse():
    with pytest.raises(RemoteProtocolError, match="outside what Harbour stores"):
        schema.to_storage(pa.table({"t": pa.array([10**13], pa.timestamp("s"))}))


def test_conform_casts_fills_and_orders():
    target = pa.schema([("row_id", pa.int64()), ("note", pa.string()), ("value", pa.float64())])
    data = schema.to_storage(pa.table({"value": pa.array([1.5], pa.float32()), "ROW_ID": pa.array([3], pa.int8())}))
    out = schema.conform(data, target)
    assert out.schema == target and out.to_pylist() == [{"row_id": 3, "note": None, "value": 1.5}]


@pytest.mark.parametrize(("column", "fragment"), [
    (pa.array([{"x": "ship-1"}]), "must be a string"),
    (pa.array([["ship-1"]]), "must be a string"),
    (pa.array([b"\xff"], pa.binary()), "must be a string"),
    (pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(b"\0\0\0\0\1\0\0\0"), pa.py_buffer(b"\xff")]),
     "not valid UTF-8"),
    (pa.array(["ship-2"]), "another site"),
    (pa.array([None], pa.string()), "another site"),
])
def test_a_site_column_that_is_not_the_uploaders_name_is_refused(column, fragment):
    _, site, problem = schema.split_site(pa.table({"v": [1], "_site": column}), "ship-1")
    assert problem is not None and fragment in problem and site is None


def test_an_edges_own_site_column_is_checked_once_and_kept_as_the_lineage_column():
    data, site, problem = schema.split_site(pa.table({"v": [1, 2], "_site": ["ship-1", "ship-1"]}), "ship-1")
    assert problem is None and data.column_names == ["v"] and site.to_pylist() == ["ship-1", "ship-1"]
    dictionary = pa.array(["ship-1"]).dictionary_encode()
    data, site, problem = schema.split_site(pa.table({"v": [1], "_site": dictionary}), "ship-1")
    assert problem is None and data.column_names == ["v"] and site.type == pa.string()
    twice = pa.Table.from_arrays([pa.array(["ship-1"]), pa.array(["ship-1"])], names=["_site", "_site"])
    assert "more than once" in schema.split_site(twice, "ship-1")[2]


def test_a_segment_without_a_site_column_gets_the_uploaders():
    data, site, problem = schema.split_site(pa.table({"v": [1, 2]}), "ship-1")
    assert problem is None and data.column_names == ["v"]
    assert site.type == pa.string() and site.to_pylist() == ["ship-1", "ship-1"]
