"""A published file becomes one Arrow IPC stream (``hub.dataset_files``): every accepted format, the one type
system's storage types, and clear errors for what cannot be a dataset."""

from __future__ import annotations

import datetime
import hashlib
import json

import pyarrow as pa
import pyarrow.ipc as pa_ipc
import pyarrow.parquet as pq
import pytest

from hub.dataset_files import DatasetFileError, convert, detect_format

TABLE = pa.table({"sku": ["a", "b", "c"], "price": pa.array([1, 2, 3], pa.int32()),
                  "valid_from": pa.array([0, 86_400, 172_800], pa.timestamp("s"))})


def writers():
    def parquet(path):
        pq.write_table(TABLE, path)

    def arrow_file(path):
        with pa_ipc.new_file(path, TABLE.schema) as writer:
            writer.write_table(TABLE)

    def arrow_stream(path):
        with pa_ipc.new_stream(path, TABLE.schema) as writer:
            writer.write_table(TABLE)

    def csv(path):
        path.write_text("sku,price,valid_from\na,1,1970-01-01T00:00:00\nb,2,1970-01-02 00:00\nc,3,1970-01-03\n")

    def jsonl(path):
        path.write_text("\n".join(json.dumps({"sku": s, "price": p, "valid_from": f"1970-01-0{d}T00:00:00Z"})
                                  for s, p, d in (("a", 1, 1), ("b", 2, 2), ("c", 3, 3))) + "\n")

    return {"x.parquet": ("parquet", parquet), "x.arrow": ("arrow-file", arrow_file),
            "data.bin": ("arrow-stream", arrow_stream), "x.csv": ("csv", csv), "x.jsonl": ("jsonl", jsonl),
            "noext": ("jsonl", jsonl)}


@pytest.mark.parametrize("filename", list(writers()))
def test_every_format_becomes_the_same_stream_of_storage_types(tmp_path, filename):
    fmt, write = writers()[filename]
    source = tmp_path / filename
    write(source)
    assert detect_format(source) == fmt
    made = convert(source, tmp_path / "out.arrows")
    data = made.path.read_bytes()
    assert (made.size, made.sha256, made.rows, made.columns, made.source_format) == (
        len(data), hashlib.sha256(data).hexdigest(), 3, 3, fmt)
    table = pa_ipc.open_stream(data).read_all()
    assert table.column("sku").to_pylist() == ["a", "b", "c"] and table.column("price").to_pylist() == [1, 2, 3]
    assert table.schema.field("price").type == pa.int64()
    assert table.schema.field("valid_from").type == pa.timestamp("us", tz="UTC")


@pytest.mark.parametrize("name, content, words", [
    ("empty.parquet", b"", "is empty"),
    ("bad.parquet", b"PAR1 not really a parquet file PAR1", "not valid parquet"),
    ("headless.parquet", b"not even the magic bytes", "not valid parquet"),
    ("cut.arrow", b"ARROW1\x00\x00garbage", "not valid arrow-file"),
    ("cut.arrows", b"\xff\xff\xff\xff\x10\x00\x00\x00junk", "not valid arrow-stream"),
    ("notes.txt", b"just some words", "cannot tell what format"),
    ("x.xlsx", b"PK\x03\x04 a spreadsheet", "cannot tell what format"),
    ("x.jsonl", b'{"a": 1}\n[1, 2]\n', "line 2 is not a JSON object"),
    ("x.csv", b"a,b\n1,2,3\n", "not valid csv"),
    ("x.csv", b"_site,b\n1,2\n", "lineage"),
    ("x.csv", b"a,A\n1,2\n", "appears twice"),
    ("x.jsonl", b"\n \n", "has no columns"),
    ("latin1.csv", "name\nK\u00f8benhavn\n".encode("latin-1"), "is not UTF-8 text"),
    ("x.jsonl", b'{"a": 1}\n{"a": "text"}\n', "not valid jsonl"),
    ("x.jsonl", b'{"a": 1}\n{"a": \n', "line 2 is not valid JSON"),
])
def test_files_that_cannot_be_a_dataset_are_refused_with_the_reason(tmp_path, name, content, words):
    source = tmp_path / name
    source.write_bytes(content)
    with pytest.raises(DatasetFileError) as caught:
        convert(source, tmp_path / "out.arrows")
    assert words in str(caught.value) and str(source) in str(caught.value)
    assert not (tmp_path / "out.arrows").exists()


def test_json_lines_keep_the_nulls_in_lists_and_take_every_rows_keys(tmp_path):
    source = tmp_path / "x.jsonl"
    source.write_text('{"tags": [null, "a"], "n": 1}\n{"tags": ["b", null], "since": "2026-01-01"}\n')
    table = pa_ipc.open_stream(convert(source, tmp_path / "out.arrows").path.read_bytes()).read_all()
    assert table.to_pylist() == [{"tags": [None, "a"], "n": 1, "since": None},
                                 {"tags": ["b", None], "n": None, "since": datetime.date(2026, 1, 1)}]


def test_a_missing_file_and_an_unknown_forced_format(tmp_path):
    with pytest.raises(DatasetFileError, match="is not a file"):
        convert(tmp_path / "nope.csv", tmp_path / "out.arrows")
    (tmp_path / "x.csv").write_text("a\n1\n")
    with pytest.raises(DatasetFileError, match="--input-format 'xml'"):
        convert(tmp_path / "x.csv", tmp_path / "out.arrows", "xml")


def test_progress_is_told_after_every_batch(tmp_path):
    pq.write_table(pa.table({"n": list(range(200_000))}), tmp_path / "big.parquet", row_group_size=50_000)
    seen = []
    made = convert(tmp_path / "big.parquet", tmp_path / "out.arrows", progress=lambda rows, size: seen.append(rows))
    assert seen == sorted(seen) and seen[-1] == made.rows == 200_000 and len(seen) >= 4


def test_the_size_bound_stops_the_conversion(tmp_path, monkeypatch):
    monkeypatch.setattr("hub.dataset_files.MAX_DATASET_BYTES", 1000)
    pq.write_table(pa.table({"n": list(range(10_000))}), tmp_path / "big.parquet")
    with pytest.raises(DatasetFileError, match="larger than 1000 bytes"):
        convert(tmp_path / "big.parquet", tmp_path / "out.arrows")
    assert not (tmp_path / "out.arrows").exists()
