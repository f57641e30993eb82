"""Decoding the four body formats, and refusing malformed or hostile bodies with a 400 that says why (G6)."""

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_node.codecs import ARROW_STREAM, CONTENT_TYPES, CSV, JSON_LINES, PARQUET, decode_body, encode_arrow_stream
from sync_protocol import ErrorCode, RemoteProtocolError

ROWS = pa.table({"id": [1, 2, 3], "name": ["a", "b", None], "temp": [1.5, 2.5, 3.5]})


def parquet_bytes(table: pa.Table, **options) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, **options)
    return sink.getvalue()


def test_each_format_decodes_to_the_same_rows():
    bodies = {
        ARROW_STREAM: encode_arrow_stream(ROWS),
        JSON_LINES: b'{"id": 1, "name": "a", "temp": 1.5}\n{"id": 2, "name": "b", "temp": 2.5}\n'
                    b'{"id": 3, "name": null, "temp": 3.5}\n',
        CSV: b"id,name,temp\n1,a,1.5\n2,b,2.5\n3,,3.5\n",
        PARQUET: parquet_bytes(ROWS),
    }
    for content_type, body in bodies.items():
        table = decode_body(content_type, body)
        assert table.column("id").to_pylist() == [1, 2, 3], content_type
        assert table.column("temp").to_pylist() == [1.5, 2.5, 3.5], content_type


def test_record_batch_stream_round_trips():
    batch = ROWS.to_batches()[0]
    assert decode_body(ARROW_STREAM, encode_arrow_stream(batch)).equals(ROWS)


@pytest.mark.guarantee("G6")
@pytest.mark.parametrize(("content_type", "body", "says"), [
    (ARROW_STREAM, b"not arrow at all", "Arrow IPC stream"),
    (ARROW_STREAM, encode_arrow_stream(ROWS)[:-40], "Arrow IPC stream"),
    (JSON_LINES, b'{"id": 1}\n{"id": \n', "JSON Lines"),
    (JSON_LINES, b"[1, 2, 3]\n", "JSON Lines"),
    (CSV, b"id,name\n1,a,extra,fields\n", "CSV"),
    (PARQUET, b"PAR1garbagePAR1", "Parquet"),
    (PARQUET, parquet_bytes(ROWS)[:-30], "Parquet"),
])
def test_malformed_bodies_are_400_naming_the_format(content_type, body, says):
    with pytest.raises(RemoteProtocolError) as caught:
        decode_body(content_type, body)
    assert caught.value.code is ErrorCode.BAD_REQUEST
    assert says in str(caught.value)


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_empty_body_is_400(content_type):
    with pytest.raises(RemoteProtocolError, match="empty"):
        decode_body(content_type, b"")


def test_unknown_content_type_is_415_listing_the_accepted_ones():
    with pytest.raises(RemoteProtocolError) as caught:
        decode_body("application/json", b"{}")
    assert caught.value.status == 415
    assert JSON_LINES in str(caught.value)


@pytest.mark.guarantee("G6")
def test_parquet_decompression_bomb_is_refused_before_decoding():
    zeros = pa.table({"z": pa.repeat(pa.scalar(0, pa.int64()), 20_000_000)})
    body = parquet_bytes(zeros, compression="zstd")
    assert len(body) * 1000 < zeros.nbytes  # the premise: it expands a thousandfold
    with pytest.raises(RemoteProtocolError, match="expand"):
        decode_body(PARQUET, body)


@pytest.mark.guarantee("G6")
def test_string_bomb_is_stopped_at_the_row_group_that_crosses_the_bound():
    big = pa.table({"s": pa.repeat(pa.scalar("x" * 1000), 100_000)})  # 100 MB of strings
    body = parquet_bytes(big, compression="zstd", row_group_size=10_000)
    with pytest.raises(RemoteProtocolError, match="expand"):
        decode_body(PARQUET, body)


@pytest.mark.guarantee("G6")
@settings(max_examples=200, deadline=None)
@given(content_type=st.sampled_from(CONTENT_TYPES), body=st.binary(min_size=1, max_size=512))
def test_random_bytes_never_escape_as_anything_but_a_400(content_type, body):
    try:
        decode_body(content_type, body)
    except RemoteProtocolError as error:
        assert error.status == 400


@pytest.mark.guarantee("G6")
@settings(max_examples=100, deadline=None)
@given(cut=st.integers(min_value=1, max_value=400), flip=st.integers(min_value=0, max_value=255))
def test_mangled_arrow_streams_are_decoded_or_refused(cut, flip):
    body = bytearray(encode_arrow_stream(ROWS))
    body[cut % len(body)] ^= flip
    try:
        table = decode_body(ARROW_STREAM, bytes(body))
    except RemoteProtocolError as error:
        assert error.status == 400
    else:
        table.validate(full=True)


@pytest.mark.guarantee("G6")
@pytest.mark.parametrize("body", [b"null", b" null", b"null\n", b'{"a": 1}\nnull', b"[1]", b"\n\n1\n"])
def test_json_lines_that_are_not_objects_are_refused_without_crashing(body):
    # b"null" alone once crashed the process inside pyarrow's JSON reader (SIGSEGV).
    with pytest.raises(RemoteProtocolError) as caught:
        decode_body(JSON_LINES, body)
    assert caught.value.status == 400 and "not a JSON object" in str(caught.value)


TEXT_TIMES = ["2026-12-01T10:00:00Z", "2026-12-01T10:00:00.250Z", "2026-12-01T12:00:00+02:00", "2026-12-01T10:00:00",
              "2026-12-01 10:00"]


@pytest.mark.parametrize("text", TEXT_TIMES)
def test_json_lines_and_csv_read_the_same_timestamp_text_as_the_same_utc_value(text):
    import datetime as dt

    from edge_node.schemas import normalize

    expected = dt.datetime(2026, 12, 1, 10, 0, 0, 250000 if ".250" in text else 0, tzinfo=dt.UTC)
    json_body = f'{{"ts": "{text}", "day": "2026-12-01", "clock": "10:00:00"}}\n'.encode()
    csv_body = f"ts,day,clock\n{text},2026-12-01,10:00:00\n".encode()
    tables = [normalize(decode_body(JSON_LINES, json_body)), normalize(decode_body(CSV, csv_body))]
    for table in tables:
        assert str(table.schema.field("ts").type) == "timestamp[us, tz=UTC]"
        assert table.column("ts").to_pylist() == [expected]
        assert table.schema.field("day").type == pa.date32()
        assert table.schema.field("clock").type == pa.string()  # a time of day: Delta has no such type
    assert tables[0].schema == tables[1].schema


def test_nested_json_timestamps_follow_the_same_rule():
    table = decode_body(JSON_LINES, b'{"s": {"at": "2026-12-01T10:00:00.5Z", "n": 1}}\n')
    assert str(table.schema.field("s").type) == "struct<at: timestamp[us, tz=UTC], n: int64>"


@pytest.mark.guarantee("G6")
def test_csv_text_that_is_not_utf8_is_refused():
    with pytest.raises(RemoteProtocolError, match="'name' is not valid UTF-8") as caught:
        decode_body(CSV, b"id,name\n1,caf\xe9\n")
    assert caught.value.status == 400


@pytest.mark.parametrize(("line", "values"), [
    (b'{"l": [null, 0]}', [None, 0]),  # pyarrow's reader alone made this [0]
    (b'{"l": [null, null, "x"]}', [None, None, "x"]),
    (b'{"l": [null, null]}', [None, None]),
    (b'{"l": [[null], [null, 1]]}', [[None], [None, 1]]),
])
def test_json_lists_keep_their_nulls(line, values):
    table = decode_body(JSON_LINES, line + b"\n")
    table.validate(full=True)
    assert table.column("l").to_pylist() == [values]


@pytest.mark.guarantee("G6")
@pytest.mark.parametrize(("body", "refused"), [
    (b'{"a": ' + b"[" * 32 + b"1" + b"]" * 32 + b"}\n", False),  # the deepest column the type rules allow
    (b'{"a": ' + b"[" * 33 + b"1" + b"]" * 33 + b"}\n", True),
    (b'{"a": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", True),
    (b'{"a": "x"}\n' * 3 + b'{"a": "' + b"[{" * 5_000 + b'"}\n', False),  # brackets inside a string
    (b'{"a": "\\"' + b"[" * 50 + b'"}\n', False),  # after an escaped quote, still inside the string
    (b'{"p": "' + b"x" * (3 << 20) + b'", "a": ' + b"[" * 40 + b"]" * 40 + b"}\n", True),  # a line past a slice
    (b'{"a": "x"}\n' * 300_000 + b'{"a": ' + b"{\"b\": " * 40 + b"1" + b"}" * 40 + b"}\n", True),
])
def test_json_nesting_is_bounded_before_pyarrow_reads_it(body, refused):
    if refused:
        with pytest.raises(RemoteProtocolError, match="nested more than 32 levels"):
            decode_body(JSON_LINES, body)
    else:
        decode_body(JSON_LINES, body)
