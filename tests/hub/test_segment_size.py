"""The decoded size of a segment, counted from its footer and its dictionaries (``hub.segment_size``)."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hub.segment_size import decoded_bytes


def parquet(table: pa.Table, **options) -> pa.BufferReader:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", **options)
    return pa.BufferReader(sink.getvalue())


ROWS = 200_000
TABLES = {
    "numbers": pa.table({"i8": pa.array([i % 100 for i in range(ROWS)], pa.int8()),
                         "f": pa.array([i / 3 for i in range(ROWS)]),
                         "ts": pa.array(range(ROWS), pa.timestamp("us", "UTC")),
                         "b": pa.array([i % 2 == 0 for i in range(ROWS)])}),
    "strings": pa.table({"few": pa.array([f"tag-{i % 7}" for i in range(ROWS)]),
                         "unique": pa.array([f"message {i}" for i in range(ROWS)]),
                         "nulls": pa.array([None if i % 3 else "x" * 40 for i in range(ROWS)])}),
    "nested": pa.table({"l": pa.array([[f"v{i % 5}"] * (i % 4) for i in range(ROWS)]),
                        "s": pa.array([{"x": i, "y": f"y{i % 9}"} for i in range(ROWS)])}),
}


@pytest.mark.parametrize("name", TABLES)
@pytest.mark.parametrize("options", [{}, {"use_dictionary": False}, {"row_group_size": 30_000}],
                         ids=["dictionary", "plain", "row-groups"])
def test_the_count_is_close_to_what_the_rows_take_in_arrow(name, options):
    table = TABLES[name]
    counted = decoded_bytes(parquet(table, **options))
    assert 0.8 * table.nbytes <= counted <= 1.6 * table.nbytes, (counted, table.nbytes)


def test_a_repeated_string_is_counted_at_its_decoded_size_though_its_pages_are_tiny():
    bomb = pa.table({"s": pa.repeat(pa.scalar("x" * 1000), 1_000_000)})  # 1 GB of one string
    source = parquet(bomb)
    footer = pq.read_metadata(source)
    assert sum(footer.row_group(g).total_byte_size for g in range(footer.num_row_groups)) < bomb.nbytes / 1000
    assert decoded_bytes(source) >= bomb.nbytes


def test_prefix_encoding_is_counted_by_decoding_it_in_batches():
    keys = pa.table({"k": pa.array(["a" * 500 + str(i) for i in range(20_000)])})
    source = parquet(keys, use_dictionary=False, column_encoding={"k": "DELTA_BYTE_ARRAY"})
    assert decoded_bytes(source) >= keys.nbytes


def test_counting_stops_past_the_limit():
    bomb = pa.table({"a": pa.repeat(pa.scalar("x" * 1000), 100_000), "b": pa.repeat(pa.scalar("y" * 1000), 100_000)})
    assert 100_000_000 < decoded_bytes(parquet(bomb), stop_above=50_000_000) < bomb.nbytes  # one column read of two


def test_a_file_that_is_not_parquet_raises_what_the_reader_raises():
    with pytest.raises(pa.ArrowInvalid):
        decoded_bytes(pa.BufferReader(b"PAR1 not really PAR1"))
