"""The shared type rules: storage types, widening, names, whole-schema plans (pure functions)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_protocol.table_types import (
    MAX_NESTING_DEPTH,
    TIMESTAMP,
    TypeRefused,
    nesting_depth,
    plan,
    storage_schema,
    storage_type,
    wider_type,
)


@pytest.mark.parametrize(("given_type", "stored"), [
    (pa.int8(), pa.int64()), (pa.uint64(), pa.int64()), (pa.float16(), pa.float64()), (pa.float32(), pa.float64()),
    (pa.large_string(), pa.string()), (pa.string_view(), pa.string()), (pa.dictionary(pa.int8(), pa.string()),
                                                                        pa.string()),
    (pa.large_binary(), pa.binary()), (pa.binary(16), pa.binary()),
    (pa.timestamp("ns", tz="Europe/Oslo"), TIMESTAMP), (pa.timestamp("s"), TIMESTAMP), (pa.date64(), pa.date32()),
    (pa.decimal256(20, 4), pa.decimal128(20, 4)), (pa.bool_(), pa.bool_()), (pa.null(), pa.null()),
    (pa.large_list(pa.int16()), pa.list_(pa.int64())), (pa.list_(pa.int8(), 3), pa.list_(pa.int64())),
    (pa.struct([("a", pa.float32())]), pa.struct([("a", pa.float64())])), (pa.struct([]), pa.null()),
])
def test_storage_types(given_type, stored):
    assert storage_type(given_type, "x") == stored


@pytest.mark.parametrize(("refused", "rule"), [
    (pa.time32("s"), "no time-of-day type"), (pa.time64("us"), "no time-of-day type"),
    (pa.duration("s"), "no duration type"), (pa.month_day_nano_interval(), "no duration type"),
    (pa.map_(pa.string(), pa.int64()), "list of {key, value} structs"), (pa.decimal256(40, 2), "at most 38 digits"),
    (pa.struct([("a", pa.int64()), ("A", pa.int64())]), "appears twice"),
    (pa.struct([("", pa.int64())]), "empty"),
    (pa.list_(pa.struct([("t", pa.time64("us"))])), "no time-of-day type"),
])
def test_types_delta_cannot_hold_are_refused_with_the_rule(refused, rule):
    with pytest.raises(TypeRefused, match=rule) as caught:
        storage_type(refused, "x")
    assert caught.value.problem.hint


def nested(depth: int) -> pa.DataType:
    dtype = pa.int64()
    for level in range(depth):
        dtype = pa.list_(dtype) if level % 2 else pa.struct([("f", dtype)])
    return dtype


def test_nesting_is_limited_well_inside_deltas_limit():
    assert nesting_depth(nested(MAX_NESTING_DEPTH)) == MAX_NESTING_DEPTH
    storage_type(nested(MAX_NESTING_DEPTH), "x")
    with pytest.raises(TypeRefused, match=f"more than {MAX_NESTING_DEPTH} levels"):
        storage_type(nested(60), "x")


@pytest.mark.parametrize(("a", "b", "wider"), [
    (pa.int64(), pa.float64(), pa.float64()),
    (pa.null(), pa.string(), pa.string()),
    (pa.date32(), TIMESTAMP, TIMESTAMP),
    (pa.decimal128(10, 2), pa.decimal128(5, 4), pa.decimal128(12, 4)),
    (pa.list_(pa.int64()), pa.list_(pa.float64()), pa.list_(pa.float64())),
    (pa.struct([("a", pa.int64())]), pa.struct([("A", pa.null()), ("b", pa.bool_())]),
     pa.struct([("a", pa.int64()), ("b", pa.bool_())])),
])
def test_widening(a, b, wider):
    assert wider_type(a, b, "x") == wider


@pytest.mark.parametrize(("a", "b"), [
    (pa.int64(), pa.string()), (pa.float64(), pa.decimal128(10, 2)), (pa.bool_(), pa.int64()),
    (pa.binary(), pa.string()), (pa.date32(), pa.string()), (pa.list_(pa.int64()), pa.int64()),
    (pa.struct([("a", pa.int64())]), pa.struct([("a", pa.string())])),
])
def test_changes_of_kind_do_not_widen(a, b):
    for first, second in ((a, b), (b, a)):
        with pytest.raises(TypeRefused):
            wider_type(first, second, "x")


LEAVES = [pa.null(), pa.bool_(), pa.int64(), pa.float64(), pa.string(), pa.binary(), pa.date32(), TIMESTAMP,
          pa.decimal128(10, 2), pa.decimal128(20, 6)]


def storage_types() -> st.SearchStrategy[pa.DataType]:
    def extend(children):
        return st.one_of(children.map(pa.list_), st.lists(st.tuples(st.sampled_from("abAB"), children), min_size=1,
                                                           max_size=3, unique_by=lambda f: f[0].lower())
                         .map(lambda fields: pa.struct(fields)))
    return st.recursive(st.sampled_from(LEAVES), extend, max_leaves=6)


def join(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    try:
        return wider_type(a, b, "x")
    except TypeRefused:
        return None


def same_up_to_field_order(a: pa.DataType | None, b: pa.DataType | None) -> bool:
    if a is None or b is None:
        return a is b
    if pa.types.is_struct(a) and pa.types.is_struct(b):
        fields_a = {f.name.lower(): f.type for f in a}
        fields_b = {f.name.lower(): f.type for f in b}
        return fields_a.keys() == fields_b.keys() and all(same_up_to_field_order(fields_a[k], fields_b[k])
                                                          for k in fields_a)
    if pa.types.is_list(a) and pa.types.is_list(b):
        return same_up_to_field_order(a.value_type, b.value_type)
    return a.equals(b)


@given(storage_types(), storage_types(), storage_types())
def test_widening_does_not_depend_on_which_ship_arrived_first(a, b, c):
    """Two ships' segments may reach the hub in either order: the table ends the same (a semilattice)."""
    assert same_up_to_field_order(join(a, b), join(b, a))
    assert same_up_to_field_order(join(a, a), a)
    left = join(a, b)
    right = join(b, c)
    assert same_up_to_field_order(join(left, c) if left is not None else None,
                                  join(a, right) if right is not None else None) or None in (left, right)
    if left is not None:
        assert storage_type(left, "x") == left  # a widened type is a storage type


def test_plan_adds_widens_and_folds_case():
    current = pa.schema([("Speed", pa.int64()), ("note", pa.string())])
    fitted = plan("t", current, pa.schema([("speed", pa.float32()), ("extra", pa.int8())]))
    assert fitted.schema == pa.schema([("Speed", pa.float64()), ("note", pa.string()), ("extra", pa.int64())])
    assert fitted.widened == ("Speed",) and fitted.new_columns == ("extra",)


def test_plan_reports_every_problem_with_the_column_both_types_and_the_rule():
    current = pa.schema([("ts", TIMESTAMP), ("n", pa.int64())])
    fitted = plan("events", current, pa.schema([("ts", pa.string()), ("n", pa.string()), ("t", pa.time32("s"))]),
                  subject="this segment")
    assert fitted.schema is None and len(fitted.problems) == 3
    ts, n, t = fitted.conflicts
    assert "'ts' of table 'events' is timestamp[us, tz=UTC], but this segment has it as string" in ts
    assert "zone-less timestamp is taken as UTC" in ts
    assert "integer and text are different kinds" in n and "int64 -> float64" in n
    assert "'t'" in t and "time32[s]" in t


def test_storage_schema_leaves_out_what_cannot_be_stored():
    assert storage_schema(pa.schema([("a", pa.int32()), ("t", pa.time32("s"))])) == (
        pa.schema([("a", pa.int64())]), ("t",))
