"""Canonical types and schema fitting: what merges, what is a conflict."""

from __future__ import annotations

import pyarrow as pa
import pytest

from hub import schema


@pytest.mark.parametrize(("given", "stored"), [
    (pa.int8(), pa.int64()), (pa.int32(), pa.int64()), (pa.uint32(), pa.int64()), (pa.int64(), pa.int64()),
    (pa.float16(), pa.float64()), (pa.float32(), pa.float64()),
    (pa.large_string(), pa.string()), (pa.dictionary(pa.int8(), pa.string()), pa.string()),
    (pa.timestamp("ns", tz="Europe/Oslo"), pa.timestamp("us", tz="UTC")),
    (pa.timestamp("s"), pa.timestamp("us")), (pa.date64(), pa.date32()), (pa.bool_(), pa.bool_()),
    (pa.list_(pa.int16()), pa.list_(pa.int64())), (pa.decimal128(10, 2), pa.decimal128(10, 2)),
])
def test_canonical_types(given, stored):
    assert schema.canonical_type(given) == stored


@pytest.mark.parametrize("unsupported", [pa.time32("s"), pa.duration("s"), pa.month_day_nano_interval()])
def test_types_delta_cannot_hold(unsupported):
    with pytest.raises(schema.UnsupportedType):
        schema.canonical_type(unsupported)


def test_widened_and_added_columns_merge():
    v1 = pa.schema([("row_id", pa.int32()), ("value", pa.float32())])
    first = schema.plan(None, v1)
    assert first.schema == pa.schema([("row_id", pa.int64()), ("value", pa.float64())])
    v2 = pa.schema([("row_id", pa.int64()), ("value", pa.float64()), ("firmware", pa.string())])
    second = schema.plan(first.schema, v2)
    assert second.conflicts == () and second.new_columns == ("firmware",)
    older = schema.plan(second.schema, pa.schema([("row_id", pa.int16()), ("empty", pa.null())]))
    assert older.schema == second.schema  # missing columns read NULL, an all-null one adds nothing


@pytest.mark.parametrize(("incoming", "fragment"), [
    (pa.schema([("row_id", pa.string())]), "row_id"),
    (pa.schema([("row_id", pa.float64())]), "row_id"),
    (pa.schema([("_site", pa.string())]), "reserved"),
    (pa.schema([("t", pa.time64("us"))]), "cannot be stored"),
])
def test_conflicts(incoming, fragment):
    canonical = pa.schema([("row_id", pa.int64())])
    plan = schema.plan(canonical, incoming)
    assert plan.schema is None and fragment in "; ".join(plan.conflicts)


def test_conform_casts_fills_and_orders():
    target = pa.schema([("row_id", pa.int64()), ("note", pa.string()), ("value", pa.float64())])
    data = pa.table({"value": pa.array([1.5], pa.float32()), "row_id": pa.array([3], pa.int8())})
    out = schema.conform(data, target)
    assert out.schema == target and out.to_pylist() == [{"row_id": 3, "note": None, "value": 1.5}]
    with pytest.raises(pa.ArrowInvalid):
        schema.conform(pa.table({"row_id": pa.array([2**64 - 1], pa.uint64())}), pa.schema([("row_id", pa.int64())]))


def test_an_edges_own_site_column_is_dropped_and_a_foreign_one_refused():
    from hub.schema import strip_edge_site

    table = pa.table({"v": [1, 2], "_site": ["ship-1", "ship-1"]})
    kept, problem = strip_edge_site(table, "ship-1")
    assert problem is None and kept.column_names == ["v"]
    _, problem = strip_edge_site(pa.table({"v": [1, 2], "_site": ["ship-1", "ship-2"]}), "ship-1")
    assert "another site" in problem
    _, problem = strip_edge_site(pa.table({"v": [1], "_site": pa.array([None], pa.string())}), "ship-1")
    assert problem is not None
    untouched, problem = strip_edge_site(pa.table({"v": [1]}), "ship-1")
    assert problem is None and untouched.column_names == ["v"]
