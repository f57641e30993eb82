"""Schema checks and evolution: additions and widenings pass, a change of kind is a 400 naming the column."""

import pyarrow as pa
import pytest

from edge_node.config import MAX_COLUMNS
from edge_node.schemas import canonical_text, conform, deserialize, fingerprint, merge, normalize, serialize
from sync_protocol import RemoteProtocolError


def schema(**columns: pa.DataType) -> pa.Schema:
    return pa.schema([pa.field(name, dtype) for name, dtype in columns.items()])


def test_added_columns_are_appended():
    merged = merge("t", schema(a=pa.int64()), schema(b=pa.string(), a=pa.int64()))
    assert merged.names == ["a", "b"]


@pytest.mark.parametrize(("table", "written", "result"), [
    (pa.int32(), pa.int64(), pa.int64()),
    (pa.float32(), pa.float64(), pa.float64()),
    (pa.int64(), pa.int32(), pa.int64()),
    (pa.float64(), pa.int64(), pa.float64()),
    (pa.null(), pa.string(), pa.string()),
    (pa.string(), pa.null(), pa.string()),
    (pa.uint16(), pa.int64(), pa.int64()),
    (pa.timestamp("s"), pa.timestamp("us"), pa.timestamp("us")),
    (pa.decimal128(10, 2), pa.decimal128(12, 2), pa.decimal128(12, 2)),
])
def test_widening_is_allowed(table, written, result):
    assert merge("t", schema(x=table), schema(x=written)).field("x").type == result


@pytest.mark.parametrize(("table", "written"), [
    (pa.string(), pa.int64()),
    (pa.int64(), pa.string()),
    (pa.int64(), pa.float64()),
    (pa.timestamp("s", tz="UTC"), pa.timestamp("s")),
    (pa.int64(), pa.uint64()),
    (pa.list_(pa.int64()), pa.int64()),
])
def test_change_of_kind_is_a_400_naming_the_column(table, written):
    with pytest.raises(RemoteProtocolError) as caught:
        merge("events", schema(amount=table, other=pa.int64()), schema(amount=written))
    assert caught.value.status == 400
    assert "'amount'" in str(caught.value) and "'events'" in str(caught.value)


def test_case_only_difference_is_refused():
    with pytest.raises(RemoteProtocolError, match="differs only in case"):
        merge("t", schema(Speed=pa.int64()), schema(speed=pa.int64()))


def test_conform_reorders_fills_nulls_and_widens():
    written = pa.table({"b": pa.array([1, 2], pa.int32())})
    target = schema(a=pa.string(), b=pa.int64())
    result = conform(written, target)
    assert result.schema.equals(target)
    assert result.to_pylist() == [{"a": None, "b": 1}, {"a": None, "b": 2}]


def test_conform_refuses_an_integer_too_big_for_the_float_column():
    written = pa.table({"x": pa.array([2**62 + 1], pa.int64())})
    with pytest.raises(RemoteProtocolError, match="'x'"):
        conform(written, schema(x=pa.float64()))


def test_normalize_spells_types_one_way():
    table = pa.table({
        "d": pa.array(["a", "b", "a"]).dictionary_encode(),
        "l": pa.array(["x", "y", "z"], pa.large_string()),
        "h": pa.array([1, 2, 3], pa.float32()).cast(pa.float16()),
    })
    assert normalize(table).schema == schema(d=pa.string(), l=pa.string(), h=pa.float32())


@pytest.mark.parametrize("name", ["_site", "", "9lives", "a b", "naïve", "x" * 129, "../x", "a;drop"])
def test_bad_column_names_are_refused(name):
    with pytest.raises(RemoteProtocolError, match="column name"):
        normalize(pa.table({name: [1]}))


def test_duplicate_columns_are_refused_case_insensitively():
    table = pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["a", "A"])
    with pytest.raises(RemoteProtocolError, match="twice"):
        normalize(table)


def test_thousands_of_columns_are_refused():
    table = pa.table({f"c{i}": [i] for i in range(MAX_COLUMNS + 1)})
    with pytest.raises(RemoteProtocolError, match=f"at most {MAX_COLUMNS}"):
        normalize(table)


def test_unstorable_types_are_refused():
    table = pa.table({"d": pa.array([1], pa.duration("s"))})
    with pytest.raises(RemoteProtocolError, match="does not store"):
        normalize(table)


def test_fingerprint_is_stable_and_type_sensitive():
    assert canonical_text(schema(a=pa.int64(), b=pa.string())) == "a:int64;b:string"
    assert fingerprint(schema(a=pa.int64())) == fingerprint(schema(a=pa.int64()))
    assert fingerprint(schema(a=pa.int64())) != fingerprint(schema(a=pa.int32()))


def test_serialize_round_trips():
    original = schema(a=pa.int64(), t=pa.timestamp("ms", tz="UTC"), s=pa.struct([("x", pa.float64())]))
    assert deserialize(serialize(original)).equals(original)
