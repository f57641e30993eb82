"""Schema checks and evolution at the edge (the shared rules of sync_protocol.table_types, applied at ingest):
additions and widenings pass, a change of kind is a 400 naming the column, both types and the rule."""

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
    (pa.int64(), pa.float64(), pa.float64()),  # a CSV column first seen as 1 takes 2.5 later
    (pa.null(), pa.string(), pa.string()),
    (pa.string(), pa.null(), pa.string()),
    (pa.uint16(), pa.int64(), pa.int64()),
    (pa.int64(), pa.uint64(), pa.int64()),
    (pa.timestamp("s"), pa.timestamp("us"), pa.timestamp("us", tz="UTC")),
    (pa.timestamp("s", tz="UTC"), pa.timestamp("ms"), pa.timestamp("us", tz="UTC")),
    (pa.date32(), pa.timestamp("s", tz="Europe/Oslo"), pa.timestamp("us", tz="UTC")),
    (pa.decimal128(10, 2), pa.decimal128(12, 2), pa.decimal128(12, 2)),
    (pa.decimal128(10, 2), pa.decimal256(6, 4), pa.decimal128(12, 4)),
])
def test_widening_is_allowed(table, written, result):
    assert merge("t", schema(x=table), schema(x=written)).field("x").type == result


@pytest.mark.parametrize(("table", "written", "rule"), [
    (pa.string(), pa.int64(), "different kinds"),
    (pa.int64(), pa.string(), "different kinds"),
    (pa.timestamp("s", tz="UTC"), pa.string(), "zone-less timestamp is taken as UTC"),
    (pa.timestamp("us", tz="UTC"), pa.int64(), "tz=UTC"),
    (pa.list_(pa.int64()), pa.int64(), "different kinds"),
    (pa.decimal128(38, 0), pa.decimal128(10, 5), "43 digits"),
])
def test_change_of_kind_is_a_400_naming_the_column_both_types_and_the_rule(table, written, rule):
    with pytest.raises(RemoteProtocolError) as caught:
        merge("events", schema(amount=table, other=pa.int64()), schema(amount=written))
    assert caught.value.status == 400
    message = str(caught.value)
    assert "'amount'" in message and rule in message and str(written) in message


def test_a_case_only_difference_folds_into_the_existing_column():
    merged = merge("t", schema(Speed=pa.int64()), schema(speed=pa.float64()))
    assert merged == schema(Speed=pa.float64())
    assert conform(normalize(pa.table({"speed": [2.5]})), merged).to_pylist() == [{"Speed": 2.5}]


def test_conform_reorders_fills_nulls_and_widens():
    written = normalize(pa.table({"b": pa.array([1, 2], pa.int32())}))
    target = schema(a=pa.string(), b=pa.float64())
    result = conform(written, target)
    assert result.schema.equals(target)
    assert result.to_pylist() == [{"a": None, "b": 1.0}, {"a": None, "b": 2.0}]


def test_an_integer_beyond_2_53_rounds_into_a_float_column():
    written = normalize(pa.table({"x": pa.array([2**62 + 1], pa.int64())}))
    assert conform(written, schema(x=pa.float64())).column("x").to_pylist() == [float(2**62)]


@pytest.mark.parametrize(("column", "fragment"), [
    (pa.array([10**13], pa.timestamp("s")), "outside what Harbour stores"),
    (pa.array([-(10**15)], pa.timestamp("ms")), "outside what Harbour stores"),
    (pa.array([3_000_000], pa.date32()), "outside what Harbour stores"),
    (pa.array([2**64 - 1], pa.uint64()), "does not fit int64"),
    (pa.array([1], pa.time32("s")), "no time-of-day type"),
    (pa.array([1], pa.decimal256(50, 2)), "at most 38 digits"),
    (pa.StructArray.from_arrays([pa.array([1]), pa.array([2])], names=["a", "A"]), "appears twice"),
])
def test_values_and_types_the_hub_cannot_hold_are_refused(column, fragment):
    with pytest.raises(RemoteProtocolError, match=fragment):
        normalize(pa.table({"x": column}))


def test_nesting_deeper_than_the_limit_is_refused():
    from sync_protocol.table_types import MAX_NESTING_DEPTH

    deep, value = pa.int64(), 1
    for _ in range(MAX_NESTING_DEPTH):
        deep, value = pa.struct([("f", deep)]), {"f": value}
    normalize(pa.table({"x": pa.array([value], deep)}))
    with pytest.raises(RemoteProtocolError, match=f"more than {MAX_NESTING_DEPTH} levels"):
        normalize(pa.table({"x": pa.array([{"f": value}], pa.struct([("f", deep)]))}))


def test_normalize_spells_types_one_way():
    table = pa.table({
        "d": pa.array(["a", "b", "a"]).dictionary_encode(),
        "l": pa.array(["x", "y", "z"], pa.large_string()),
        "h": pa.array([1, 2, 3], pa.float32()).cast(pa.float16()),
        "i": pa.array([1, 2, 3], pa.int8()),
        "t": pa.array([1, 2, 3], pa.timestamp("ns", tz="Asia/Tokyo")),
        "n": pa.array([10**9, 2 * 10**9, 3 * 10**9], pa.timestamp("s")),
    })
    normalized = normalize(table)
    assert normalized.schema == schema(d=pa.string(), l=pa.string(), h=pa.float64(), i=pa.int64(),
                                       t=pa.timestamp("us", tz="UTC"), n=pa.timestamp("us", tz="UTC"))
    assert normalized.column("n").cast(pa.int64()).to_pylist() == [10**15, 2 * 10**15, 3 * 10**15]  # taken as UTC


def test_a_lineage_name_is_refused():
    with pytest.raises(RemoteProtocolError, match="kept for Harbour's lineage columns"):
        normalize(pa.table({"_site": [1]}))


@pytest.mark.parametrize("name", ["", "9lives", "a b", "naïve", "x" * 129, "../x", "a;drop"])
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


def test_a_log_written_before_the_rules_does_not_stop_recovery():
    from edge_node.schemas import merge_recovered

    current = schema(a=pa.int32(), t=pa.time32("s"))
    assert merge_recovered("t", current, schema(a=pa.string())) == schema(a=pa.int64())


def test_fingerprint_is_stable_and_type_sensitive():
    assert canonical_text(schema(a=pa.int64(), b=pa.string())) == "a:int64;b:string"
    assert fingerprint(schema(a=pa.int64())) == fingerprint(schema(a=pa.int64()))
    assert fingerprint(schema(a=pa.int64())) != fingerprint(schema(a=pa.int32()))


def test_serialize_round_trips():
    original = schema(a=pa.int64(), t=pa.timestamp("ms", tz="UTC"), s=pa.struct([("x", pa.float64())]))
    assert deserialize(serialize(original)).equals(original)


def test_a_table_grows_to_at_most_max_columns_however_the_columns_arrive():
    """Issue 16: each write was capped, the table's union was not, so its segments could exceed what the hub
    merges; the write that would take the table past the cap is refused, naming the table."""
    half = MAX_COLUMNS // 2 + 1
    first = merge("wide", None, normalize(pa.table({f"a{i}": [i] for i in range(half)})).schema)
    with pytest.raises(RemoteProtocolError, match=f"a table has at most {MAX_COLUMNS}"):
        merge("wide", first, normalize(pa.table({f"b{i}": [i] for i in range(half)})).schema)


def test_a_write_with_more_rows_than_a_segment_holds_is_refused(monkeypatch):
    import edge_node.schemas

    monkeypatch.setattr(edge_node.schemas, "MAX_WRITE_ROWS", 3)
    normalize(pa.table({"v": [1, 2, 3]}))
    with pytest.raises(RemoteProtocolError, match="at most 3 are accepted in one write"):
        normalize(pa.table({"v": [1, 2, 3, 4]}))
