"""The shared type rules at a real ``harbour edge run`` (issue 12 items 2 and 5): the edge refuses, with a
400 that names the column, both types and the rule, what the hub could not hold -- so it never
acknowledges a row the hub would quarantine -- and it takes what the rules widen. Black-box: HTTP in,
``harbour edge query`` (local SQL) out."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edge_node.codecs import ARROW_STREAM, CSV, JSON_LINES, PARQUET, encode_arrow_stream
from edge_node.query import run_query

pytestmark = pytest.mark.integration

def parquet(**columns) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table({"id": [1], **columns}), sink)
    return sink.getvalue()


def ipc(**columns) -> bytes:
    return encode_arrow_stream(pa.table({"id": [1], **columns}))


def rows(edge, table: str) -> list[dict]:
    try:
        return run_query(edge.data_dir, f"SELECT * FROM {table} ORDER BY id").to_pylist()
    except Exception:  # the table does not exist
        return []


TWICE = pa.StructArray.from_arrays([pa.array([1]), pa.array([2])], names=["a", "A"])
REFUSED = [  # table, content type, body from the hostile values, what the message says
    ("deep", ARROW_STREAM, lambda h: ipc(x=h.deep_struct(60)), ["'x'", "nested more than 32 levels"]),
    ("far", ARROW_STREAM, lambda h: ipc(t=pa.array([10**13], pa.timestamp("s"))),
     ["'t'", "timestamp[s] value 10000000000000", "0001-01-01 to 9999-12-31"]),
    ("fardate", PARQUET, lambda h: parquet(d=pa.array([4_000_000 * 86_400_000], pa.date64())),
     ["'d'", "outside what Harbour stores"]),
    ("clock", ARROW_STREAM, lambda h: ipc(t=pa.array([1], pa.time32("s"))), ["'t'", "time32[s]", "no time-of-day"]),
    ("money", ARROW_STREAM, lambda h: ipc(m=pa.array([1], pa.decimal256(50, 2))),
     ["'m'", "decimal256(50, 2)", "38 digits"]),
    ("dups", ARROW_STREAM, lambda h: ipc(s=TWICE), ["'s.A'", "appears twice"]),
    ("huge", ARROW_STREAM, lambda h: ipc(u=pa.array([2**64 - 1], pa.uint64())), ["'u'", "does not fit int64"]),
    ("textcsv", CSV, lambda h: b"id,name\n1,caf\xe9\n", ["'name'", "not valid UTF-8"]),
    ("textjson", JSON_LINES, lambda h: b'{"id": 1, "name": "caf\xe9"}\n', ["'name'", "not valid UTF-8"]),
    ("textarrow", ARROW_STREAM, lambda h: ipc(name=h.invalid_utf8), ["UTF8"]),
    ("textparquet", PARQUET, lambda h: parquet(name=h.invalid_utf8), ["UTF8"]),
]


@pytest.mark.parametrize(("table", "content_type", "body", "says"), REFUSED, ids=[r[0] for r in REFUSED])
def test_what_the_hub_cannot_hold_is_refused_with_the_rule_and_nothing_is_stored(shared_edge, http, hostile, table,
                                                                                  content_type, body, says):
    status, answer = http.post(shared_edge.url, table, body(hostile), content_type)
    assert status == 400, answer
    for word in says:
        assert word in answer["error"], answer
    assert rows(shared_edge, table) == []
    assert http.get(shared_edge.url, "/healthz")[0] == 200


def test_a_decimal256_that_fits_38_digits_is_stored_as_decimal128(shared_edge, http):
    body = ipc(m=pa.array([12], pa.decimal256(20, 2)))
    assert http.post(shared_edge.url, "ledger", body, ARROW_STREAM)[0] == 200
    stored = run_query(shared_edge.data_dir, "SELECT m FROM ledger")
    assert stored.schema.field("m").type == pa.decimal128(20, 2) and str(stored.column("m")[0]) == "12.00"


def test_widening_and_case_folding_are_accepted(shared_edge, http):
    url = shared_edge.url
    assert http.post(url, "readings", b"id,Speed\n1,1\n", CSV)[0] == 200  # first seen as an integer
    assert http.post(url, "readings", b"id,speed\n2,2.5\n", CSV)[0] == 200  # 2.5 later, spelled otherwise
    assert http.post(url, "readings", b'{"id": 3, "SPEED": 4}\n', JSON_LINES)[0] == 200
    assert [(r["id"], r["Speed"]) for r in rows(shared_edge, "readings")] == [(1, 1.0), (2, 2.5), (3, 4.0)]


def test_timestamps_are_utc_in_every_format(shared_edge, http):
    url = shared_edge.url
    table = pa.table({"id": [1], "seen": pa.array([0], pa.timestamp("ms", tz="UTC"))})
    assert http.post(url, "moments", encode_arrow_stream(table), ARROW_STREAM)[0] == 200
    lines = b'{"id": 2, "seen": "2026-12-01T10:00:00.5Z"}\n{"id": 3, "seen": "2026-12-01T12:00:00+02:00"}\n'
    status, answer = http.post(url, "moments", lines, JSON_LINES)  # was refused without naming the time zone
    assert status == 200, answer
    assert http.post(url, "moments", b"id,seen\n4,2026-12-01T10:00:00\n", CSV)[0] == 200  # zone-less: taken as UTC
    stored = run_query(shared_edge.data_dir, "SELECT id, epoch_us(seen) AS us FROM moments ORDER BY id").to_pylist()
    ten = 1_796_119_200_000_000  # 2026-12-01T10:00:00Z
    assert [(r["id"], r["us"]) for r in stored] == [(1, 0), (2, ten + 500_000), (3, ten), (4, ten)]
    status, answer = http.post(url, "moments", b'{"id": 5, "seen": "soon"}\n', JSON_LINES)
    assert status == 400 and "'seen'" in answer["error"] and "timestamp[us, tz=UTC]" in answer["error"]
    assert "taken as UTC" in answer["error"]
