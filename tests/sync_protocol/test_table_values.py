"""Values into storage types with every check on: ranges, overflow, UTF-8, folding of names."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_protocol import LocalProtocolError, RemoteProtocolError
from sync_protocol.table_values import FIRST_DAY, LAST_DAY, conform, to_storage

UTC = dt.UTC
EPOCH = dt.date(1970, 1, 1)


def test_the_value_range_is_the_one_of_delta_and_python():
    assert EPOCH + dt.timedelta(days=FIRST_DAY) == dt.date.min
    assert EPOCH + dt.timedelta(days=LAST_DAY) == dt.date.max


@pytest.mark.parametrize("column", [
    pa.array([10**13], pa.timestamp("s")),  # once stored as 265698 BC
    pa.array([253402300800], pa.timestamp("s")),  # 10000-01-01
    pa.array([-62135596801], pa.timestamp("s", tz="UTC")),  # a second before 0001-01-01
    pa.array([253402300800 * 1000], pa.timestamp("ms")),
    pa.array([LAST_DAY + 1], pa.date32()),
    pa.array([(FIRST_DAY - 1) * 86_400_000], pa.date64()),
    pa.array([[{"t": 10**13}]], pa.list_(pa.struct([("t", pa.timestamp("s"))]))),
])
def test_dates_and_timestamps_outside_0001_9999_are_refused_never_wrapped(column):
    with pytest.raises(RemoteProtocolError, match="outside what Harbour stores"):
        to_storage(pa.table({"x": column}))


def test_the_edges_of_the_range_are_kept():
    table = to_storage(pa.table({
        "first": pa.array([-62135596800], pa.timestamp("s")),
        "last": pa.array([253402300799999999], pa.timestamp("us")),
        "d": pa.array([FIRST_DAY * 86_400_000], pa.date64()),
    }))
    assert table.to_pylist() == [{"first": dt.datetime(1, 1, 1, tzinfo=UTC),
                                  "last": dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
                                  "d": dt.date(1, 1, 1)}]


def test_a_zone_less_timestamp_is_taken_as_utc_and_zones_are_converted():
    table = to_storage(pa.table({"naive": pa.array([3600], pa.timestamp("s")),
                                 "oslo": pa.array([3600], pa.timestamp("s", tz="Europe/Oslo"))}))
    assert table.column("naive").cast(pa.int64()).to_pylist() == [3_600_000_000]
    assert table.column("oslo").cast(pa.int64()).to_pylist() == [3_600_000_000]  # the same instant
    nanos = to_storage(pa.table({"ns": pa.array([1_999, -1_999], pa.timestamp("ns"))}))
    assert nanos.column("ns").cast(pa.int64()).to_pylist() == [1, -1]  # truncated towards zero


@pytest.mark.parametrize(("column", "fragment"), [
    (pa.array([2**63], pa.uint64()), "does not fit int64"),
    (pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(b"\0\0\0\0\2\0\0\0"), pa.py_buffer(b"\xc3(")]),
     "not valid UTF-8"),
])
def test_overflow_and_invalid_utf8_are_refused(column, fragment):
    with pytest.raises(RemoteProtocolError, match=fragment) as caught:
        to_storage(pa.table({"x": column}))
    assert "'x'" in str(caught.value)


def test_invalid_utf8_nested_in_a_struct_is_refused():
    bad = pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(b"\0\0\0\0\1\0\0\0"), pa.py_buffer(b"\xff")])
    with pytest.raises(RemoteProtocolError, match="not valid UTF-8"):
        to_storage(pa.table({"s": pa.StructArray.from_arrays([bad], names=["note"])}))


def test_conform_folds_case_at_every_depth_and_fills_missing_fields():
    written = to_storage(pa.table({"SPEED": pa.array([1], pa.int8()),
                                   "s": pa.array([{"A": 1, "b": [2]}, None])[:1]}))
    schema = pa.schema([("speed", pa.float64()), ("s", pa.struct([("a", pa.float64()), ("c", pa.string()),
                                                                  ("b", pa.list_(pa.float64()))])),
                        ("later", pa.string())])
    assert conform(written, schema).to_pylist() == [
        {"speed": 1.0, "s": {"a": 1.0, "c": None, "b": [2.0]}, "later": None}]


def test_sliced_and_null_nested_values_survive():
    column = pa.array([[1, 2], None, [3], []], pa.large_list(pa.int32())).slice(1)
    struct = pa.array([{"a": 1}, None, {"a": 3}, {"a": None}]).slice(1)
    table = to_storage(pa.table({"l": column, "s": struct}))
    assert table.to_pylist() == [{"l": None, "s": None}, {"l": [3], "s": {"a": 3}}, {"l": [], "s": {"a": None}}]


def test_conform_never_narrows():
    with pytest.raises(LocalProtocolError, match="no rule widens"):
        conform(to_storage(pa.table({"x": [1.5]})), pa.schema([("x", pa.int64())]))


@given(st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), max_size=20))
def test_integers_widen_to_the_nearest_float(values):
    table = conform(to_storage(pa.table({"x": pa.array(values, pa.int64())})), pa.schema([("x", pa.float64())]))
    assert table.column("x").to_pylist() == [None if v is None else float(v) for v in values]


@given(st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59, 999999)),
       st.sampled_from(["s", "ms", "us"]))
def test_every_timestamp_in_range_round_trips_in_every_unit(moment, unit):
    scale = {"s": 1, "ms": 1000, "us": 1_000_000}[unit]
    micros = (moment - dt.datetime(1970, 1, 1)) // dt.timedelta(microseconds=1)
    raw = micros // (1_000_000 // scale)
    stored = to_storage(pa.table({"t": pa.array([raw], pa.timestamp(unit))}))
    assert stored.column("t").cast(pa.int64()).to_pylist() == [raw * (1_000_000 // scale)]
