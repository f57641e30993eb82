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


@pytest.mark.guarantee("G6")
@pytest.mark.parametrize("sql", [
    "COPY (SELECT 1) TO '.tmp/leak.csv'",  # DuckDB's temp directory is writable even with external access off
    "EXPORT DATABASE '.tmp/leak'",
    "SELECT 1; COPY (SELECT 1) TO '.tmp/leak2.csv'",
    "PRAGMA version",
    "CREATE TABLE t AS SELECT 1",
])
def test_only_reading_statements_run_and_nothing_is_written(table, sql, tmp_path, monkeypatch):
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    with pytest.raises(QueryError, match="only reading statements"):
        run_query(table, sql)
    assert list(workdir.iterdir()) == []


def test_reading_statements_of_every_shape_run(table):
    for sql in ("WITH s AS (SELECT * FROM sales) SELECT count(*) FROM s", "FROM sales SELECT count(*)",
                "DESCRIBE sales", "SHOW TABLES", "EXPLAIN SELECT * FROM sales", "VALUES (1)"):
        assert run_query(table, sql).rows, sql


@pytest.mark.guarantee("G7")
def test_a_runaway_query_is_stopped_at_its_timeout(table):
    with pytest.raises(QueryError, match="longer than 0.5 s"):
        run_query(table, "SELECT count(*) FROM range(1000000000) a, range(1000000000) b", timeout=0.5)


def test_a_mistyped_table_is_named_with_the_closest_merged_one(table):
    with pytest.raises(QueryError) as raised:
        run_query(table, "SELECT * FROM sale")
    assert "did you mean sales?" in str(raised.value) and "sqlite_master" not in str(raised.value)
