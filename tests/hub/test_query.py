"""Read-only SQL over the merged tables."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from hub.query import QueryError, format_result, run_query
from sync_protocol.identifiers import TableName


@pytest.fixture
def table(layout):
    rows = pa.table({"row_id": pa.array([1, 2], pa.int64()), "note": ["a,b", None], "_site": ["s1", "s2"]})
    write_deltalake(str(layout.table_dir(TableName("sales"))), rows, mode="append")
    return layout


def test_formats(table):
    result = run_query(table, "SELECT row_id, note, _site FROM sales ORDER BY row_id")
    assert json.loads(format_result(result, "json")) == [
        {"row_id": 1, "note": "a,b", "_site": "s1"}, {"row_id": 2, "note": None, "_site": "s2"}]
    assert format_result(result, "csv").splitlines() == ["row_id,note,_site", '1,"a,b",s1', "2,,s2"]
    text = format_result(result, "table")
    assert "NULL" in text and text.endswith("(2 rows)")


@pytest.mark.parametrize("sql", [
    "COPY sales TO '/tmp/harbour-leak.csv'",
    "SELECT * FROM read_csv('/etc/passwd')",
    "ATTACH '/tmp/harbour-x.duckdb'",
    "SET enable_external_access = true",
])
def test_sql_cannot_reach_the_file_system(table, sql):
    with pytest.raises(QueryError):
        run_query(table, sql)


def test_errors_name_the_tables(table, layout):
    with pytest.raises(QueryError, match="tables: sales"):
        run_query(table, "SELECT * FROM nope")
    (layout.tables / "not-a-table").mkdir()
    assert run_query(table, "SELECT count(*) FROM sales").rows == [(2,)]
